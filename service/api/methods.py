"""405 for every method a documented path does not document, with ``Allow`` listing exactly the
methods the OpenAPI document gives that path (RFC 9110 section 15.5.6).

Starlette answers an unrouted method with the ``Allow`` of the first route that matched the path, and
each method of a path is its own route here; the FHIR facade's catch-all route answers other paths.
So the document, the one description of what each path supports, decides: the most specific template
that matches the path (literal segments beat parameters: ``/v1/measurements/batch`` over
``/v1/measurements/{measurement_id}``) gives the methods; any other method, ``OPTIONS`` included, is a
405 problem (an OperationOutcome under ``/fhir/``) before authentication or any other work.

The table is read off the documented routes when the app is made (``MethodTable.of_routers``), not off the
document itself: building the document takes about a second of CPU per app, and every new process's first
request waited for it. tests/contract/test_first_request.py holds the two tables equal.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute

from service.api.http import dumps
from service.errors import PROBLEM_BASE

Scope = dict[str, Any]
_PARAM = re.compile(r"\{[^}/]+\}")


class MethodTable:
    def __init__(self, paths: dict[str, dict[str, Any]]) -> None:
        self.exact: dict[str, frozenset[str]] = {}
        templates: list[tuple[int, int, re.Pattern[str], frozenset[str]]] = []
        for path, item in paths.items():
            methods = {m.upper() for m in item if m in ("get", "put", "post", "patch", "delete")}
            if "GET" in methods:
                methods.add("HEAD")
            if _PARAM.search(path):
                literal = sum(1 for seg in path.split("/") if seg and not _PARAM.fullmatch(seg))
                pattern = re.compile("^" + _PARAM.sub("[^/]+", re.escape(path).replace(r"\{", "{")
                                                      .replace(r"\}", "}")) + "$")
                templates.append((literal, path.count("/"), pattern, frozenset(methods)))
            else:
                self.exact[path] = frozenset(methods)
        templates.sort(key=lambda t: -t[0])
        self.by_depth: dict[int, list[tuple[re.Pattern[str], frozenset[str]]]] = {}
        for _literal, depth, pattern, verbs in templates:
            self.by_depth.setdefault(depth, []).append((pattern, verbs))

    @classmethod
    def of_routers(cls, routers: Iterable[APIRouter]) -> MethodTable:
        """The table of the paths the OpenAPI document gives these routers' routes (those in the schema), without
        building the document. A router holding another router is refused: its routes would be missed here."""
        paths: dict[str, dict[str, Any]] = {}
        for router in routers:
            for route in router.routes:
                if not isinstance(route, APIRoute):
                    raise TypeError(f"{route!r} in a documented router: include its routes' router in create_app")
                if route.include_in_schema:
                    item = paths.setdefault(route.path_format, {})
                    item.update(dict.fromkeys(m.lower() for m in route.methods or ()))
        return cls(paths)

    def allowed(self, path: str) -> frozenset[str] | None:
        """The methods of the most specific documented template matching ``path``; None if undocumented."""
        found = self.exact.get(path)
        if found is not None:
            return found
        for pattern, methods in self.by_depth.get(path.count("/"), ()):
            if pattern.match(path):
                return methods
        return None


def allow_header(methods: frozenset[str]) -> str:
    order = ["GET", "POST", "PUT", "PATCH", "DELETE"]  # HEAD is served with GET, as HTTP implies
    return ", ".join(m for m in order if m in methods)


class MethodNotAllowedMiddleware:
    def __init__(self, app: Any, table: MethodTable) -> None:
        self.app = app
        self.table = table

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        methods = self.table.allowed(path)
        if methods is None or scope["method"] in methods:
            await self.app(scope, receive, send)
            return
        allow = allow_header(methods)
        detail = f"{scope['method']} is not supported here; use {allow}"
        if path.startswith("/fhir/"):
            from service.fhir.http import FHIR_JSON, outcome

            ctype = FHIR_JSON.encode()
            body = dumps(outcome(405, detail))
        else:
            ctype = b"application/problem+json"
            body = dumps({"type": PROBLEM_BASE + "method_not_allowed", "title": "Method not allowed",
                          "status": 405, "detail": detail, "code": "method_not_allowed"})
        await send({"type": "http.response.start", "status": 405, "headers": [
            (b"content-type", ctype), (b"content-length", str(len(body)).encode()),
            (b"allow", allow.encode()), (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": body if scope["method"] != "HEAD" else b""})
