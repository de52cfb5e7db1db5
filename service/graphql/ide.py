"""GraphiQL served by the service itself (hospital networks block CDNs): the page and an allowlist of
assets from the graphene-django-graphiql-static wheel (GraphiQL 2, React 17; Django is not imported).

The page is static and holds no data: every request it sends needs a bearer token, which the user pastes
into the headers editor.
"""

from importlib.resources import files
from importlib.resources.abc import Traversable

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from service.errors import MethodNotAllowed, NotFound

ASSETS = {
    "graphiql.min.css": "text/css",
    "graphiql.min.js": "text/javascript",
    "react.production.min.js": "text/javascript",
    "react-dom.production.min.js": "text/javascript",
}

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Strengths &amp; Goals API - GraphiQL</title>
  <style>html, body, #graphiql { height: 100%; margin: 0; overflow: hidden; width: 100%; }</style>
  <link rel="stylesheet" href="__BASE__/assets/graphiql.min.css">
  <script src="__BASE__/assets/react.production.min.js"></script>
  <script src="__BASE__/assets/react-dom.production.min.js"></script>
  <script src="__BASE__/assets/graphiql.min.js"></script>
</head>
<body>
  <div id="graphiql"></div>
  <script>
    async function fetcher(params, options) {
      const headers = Object.assign({"Content-Type": "application/json", "Accept": "application/json"},
                                    (options && options.headers) || {});
      const response = await fetch("__BASE__", {method: "POST", headers, body: JSON.stringify(params)});
      return response.json();
    }
    ReactDOM.render(
      React.createElement(GraphiQL, {
        fetcher,
        isHeadersEditorEnabled: true,
        shouldPersistHeaders: false,
        defaultEditorToolsVisibility: "headers",
        headers: '{"Authorization": "Bearer <paste a token from /oauth/token>"}',
      }),
      document.getElementById("graphiql"),
    );
  </script>
</body>
</html>
"""


def _asset_dir() -> Traversable:
    return files("graphene_django_graphiql_static") / "static" / "graphene_django_graphiql_static"


def ide_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("")
    async def graphiql(request: Request) -> Response:
        """GET serves GraphiQL to browsers; queries are POSTed (no queries, hence no mutations, via GET)."""
        if "text/html" not in request.headers.get("accept", ""):
            raise MethodNotAllowed("Send GraphQL requests with POST", headers={"Allow": "POST"})
        base = request.url.path.rstrip("/")
        return HTMLResponse(PAGE.replace("__BASE__", base), headers={"Cache-Control": "no-store"})

    @router.get("/assets/{name}")
    async def asset(name: str) -> Response:
        if name not in ASSETS:
            raise NotFound(f"No asset {name}")
        path = _asset_dir() / name
        return FileResponse(str(path), media_type=ASSETS[name], headers={"Cache-Control": "public, max-age=86400"})

    return router
