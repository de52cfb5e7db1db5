"""What every FHIR interaction shares about URLs and search parameters (CONTRACT.md section 6).

- Absolute URLs (``fullUrl``, paging links, ``Location``) are built from ``PUBLIC_URL``, never from the request's
  ``Host``: a forged ``Host: evil.example`` must not send a client's next request, and its token, elsewhere.
- A reference to a resource of ours is relative (``Patient/<id>``) or under our own base; one with another base
  names a resource of another server, and is refused (422), never resolved as if it were local.
- A search parameter the server does not support is a 400 naming it, unless the request says
  ``Prefer: handling=lenient``: then it is ignored and left out of the ``self`` link.

Every FHIR route (and every resource added later) builds its URLs and reads its search parameters here.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlencode

from fastapi import Request

from service.errors import MalformedRequest

PREFIX = "/fhir/R4"
IGNORED_PARAMS = frozenset({"_format", "_pretty"})  # accepted everywhere and ignored: we answer JSON only


class BadSearch(MalformedRequest):
    code = "invalid_search"
    title = "The search parameters are not valid"


class ForeignReference(ValueError):
    """A reference with another server's base URL."""


def base_url(request: Request) -> str:
    """``PUBLIC_URL`` + ``/fhir/R4``: the base of every absolute URL this server hands out."""
    return str(request.app.state.ctx.settings.base_url) + PREFIX


def absolute(request: Request, relative: str, params: Iterable[tuple[str, str]] = ()) -> str:
    """The absolute URL of ``relative`` (e.g. ``Observation/<id>``), with ``params`` as its query."""
    query = urlencode(list(params))
    return f"{base_url(request)}/{relative.lstrip('/')}" + (f"?{query}" if query else "")


def lenient(request: Request) -> bool:
    """``Prefer: handling=lenient`` (RFC 7240; FHIR http.html#search): unknown parameters are ignored."""
    prefer = ",".join(request.headers.getlist("prefer")).replace(" ", "").lower()
    return any(part.split(";")[0] == "handling=lenient" for part in prefer.split(","))


def search_params(request: Request, supported: Iterable[str], resource_type: str) -> list[tuple[str, str]]:
    """The request's search parameters this server supports, in order (repeats kept); an unsupported one is a
    400 naming it unless the request is lenient. What is returned is what the ``self`` link shows."""
    known = set(supported)
    kept: list[tuple[str, str]] = []
    for name, value in request.query_params.multi_items():
        if name in known:
            kept.append((name, value))
        elif name not in IGNORED_PARAMS and not lenient(request):
            shown = name if len(name) <= 100 else name[:99] + "\u2026"
            raise BadSearch(f"The search parameter {shown!r} is not supported for {resource_type} (send Prefer: "
                            "handling=lenient to have unsupported parameters ignored)")
    return kept


def parameter_values(request: Request, supported: Iterable[str], resource_type: str) -> dict[str, list[str]]:
    """The supported parameters' values by name (repeats kept), after ``search_params``' check of the others: for
    searches and operations (Bulk Data kick-off, Group) alike."""
    params: dict[str, list[str]] = {}
    for name, value in search_params(request, supported, resource_type):
        params.setdefault(name, []).append(value)
    return params


def local(request: Request, reference: str) -> str:
    """``reference`` relative to our base: a relative one as it is, one under our own base without it; one under
    another server's base raises ``ForeignReference`` (it names a resource of that server, not of ours)."""
    if "://" not in reference:
        return reference
    ours = base_url(request) + "/"
    if not reference.startswith(ours):
        raise ForeignReference(reference)
    return reference[len(ours):]


def local_references(request: Request, params: dict[str, list[str]], names: Iterable[str]) -> None:
    """Search parameters of reference type made relative (``local``); another server's is a 400 naming it."""
    for name in names:
        values = params.get(name)
        if not values:
            continue
        try:
            params[name] = [",".join(local(request, v) for v in value.split(",")) for value in values]
        except ForeignReference:
            raise BadSearch(f"{name}: a reference to another server's resource; this server resolves only its "
                            "own (Patient/<id>)") from None
