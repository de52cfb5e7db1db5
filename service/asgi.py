"""ASGI entry point for worker processes (uvicorn with several workers, granian): settings come from the
environment `serve` prepared."""

from service.app import served_app
from service.settings import Settings

app = served_app(Settings())
