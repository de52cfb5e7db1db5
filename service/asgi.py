"""ASGI entry point for multi-worker serving: settings come from the environment `serve` prepared."""

from service.app import build_routes, create_app, freeze_startup_objects
from service.settings import Settings

app = create_app(Settings())
build_routes(app)
freeze_startup_objects()
