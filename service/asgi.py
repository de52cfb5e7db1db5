"""ASGI entry point for multi-worker serving: settings come from the environment `serve` prepared."""

from service.app import create_app
from service.settings import Settings

app = create_app(Settings())
