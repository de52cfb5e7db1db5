"""GraphiQL served by the service itself (hospital networks block CDNs): the page and an allowlist of
assets from the graphene-django-graphiql-static wheel (GraphiQL 2, React 17; Django is not imported).

The page is static and holds no data: every request it sends needs a bearer token. It asks for one first and
starts GraphiQL (whose first request fetches the schema) only then, so it never opens on a 401.
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
  <style>
    html, body, #graphiql { height: 100%; margin: 0; overflow: hidden; width: 100%; }
    #token-form { font: 16px system-ui, sans-serif; margin: 4em auto; max-width: 40em; padding: 0 1em; }
    #token-form input { box-sizing: border-box; font: inherit; margin: .5em 0; padding: .4em; width: 100%; }
    [hidden] { display: none !important; }
  </style>
  <link rel="stylesheet" href="__BASE__/assets/graphiql.min.css">
  <script src="__BASE__/assets/react.production.min.js"></script>
  <script src="__BASE__/assets/react-dom.production.min.js"></script>
  <script src="__BASE__/assets/graphiql.min.js"></script>
</head>
<body>
  <form id="token-form">
    <h1>Strengths &amp; Goals API: GraphiQL</h1>
    <label for="token">Access token</label>
    <input id="token" name="token" type="password" autocomplete="off" required
           placeholder="an access token from POST /oauth/token">
    <button type="submit">Open GraphiQL</button>
    <p>Every GraphQL request needs a bearer token, the schema included: get one with your app's credentials
       (<code>grant_type=client_credentials</code> at <code>/oauth/token</code>). It is kept in this page only,
       and sent as <code>Authorization: Bearer</code>; edit it later in the headers tab.</p>
  </form>
  <div id="graphiql" hidden></div>
  <script>
    async function fetcher(params, options) {
      const headers = Object.assign({"Content-Type": "application/json", "Accept": "application/json"},
                                    (options && options.headers) || {});
      const response = await fetch("__BASE__", {method: "POST", headers, body: JSON.stringify(params)});
      return response.json();
    }
    function start(token) {
      document.getElementById("token-form").hidden = true;
      const root = document.getElementById("graphiql");
      root.hidden = false;
      ReactDOM.render(
        React.createElement(GraphiQL, {
          fetcher,
          isHeadersEditorEnabled: true,
          shouldPersistHeaders: false,
          headers: JSON.stringify({"Authorization": "Bearer " + token}),
        }),
        root,
      );
    }
    // GraphiQL (and its schema request) starts only once there is a token: no request goes out without one.
    document.getElementById("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const token = document.getElementById("token").value.trim().replace(/^Bearer\\s+/i, "");
      if (token) start(token);
    });
  </script>
</body>
</html>
"""


def _asset_dir() -> Traversable:
    return files("graphene_django_graphiql_static") / "static" / "graphene_django_graphiql_static"


def ide_router(prefix: str) -> APIRouter:
    router = APIRouter(prefix=prefix, include_in_schema=False)

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
