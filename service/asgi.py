"""ASGI entry point for multi-worker serving: settings come from the environment `serve` prepared."""

from service.app import create_app, freeze_startup_objects
from service.settings import Settings

app = create_app(Settings())
freeze_startup_objects()
