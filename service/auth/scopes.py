"""The one parser of the SMART v2 scope grammar (with v1 aliases), and what a scope set allows.

Grammar: ``<context>/<Resource>.<perms>`` with context ``system``, ``user`` or ``patient``; resource a
name of ours, a FHIR alias, or ``*``; perms a non-empty subset of ``cruds`` in that order. SMART v1
``read`` means ``rs``, ``write`` means ``cud``, ``*`` means ``cruds``. The SMART context scopes
``offline_access`` (a refresh token) and ``launch/patient`` (patient context) are understood by the
authorization code flow (``grant_for_link``) and grant no resource access. Anything else (``openid``,
scopes with query modifiers) is kept as an opaque scope and grants nothing here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

from service.errors import Forbidden

if TYPE_CHECKING:
    from service.auth.principal import Principal

Context = Literal["system", "user", "patient"]
PERMS = "cruds"

# Resources besides the collections' (each collection declares its own: service.domain.registry.RESOURCES).
SERVICE_RESOURCES: tuple[str, ...] = ("Progress", "Webhook", "AuditEvent")


def resources() -> tuple[str, ...]:
    """Every resource a scope may name: the registered collections' in registry order, then the service's."""
    from service.collections.registry import REGISTRY  # imported here: the registry's modules import this one
    from service.domain import registry  # noqa: F401 - builds the registry

    return (*dict.fromkeys(c.resource for c in REGISTRY.values()), *SERVICE_RESOURCES)


# FHIR names used by the FHIR facade, as aliases of ours.
FHIR_ALIASES: dict[str, tuple[str, ...]] = {
    "Patient": ("Client",),
    "Goal": ("Goal",),
    "Observation": ("Measurement", "Strength", "ProtectiveFactor", "Exception"),
    "Flag": ("SafetyAlert",),
    "QuestionnaireResponse": ("Measurement",),  # PHQ-9 and GAD-7 measurements as SDC responses
    "Group": ("Client",),  # the organization's caseload
}
V1_PERMS = {"read": "rs", "write": "cud", "*": "cruds"}
CONTEXT_SCOPES = ("offline_access", "launch/patient")
# Resources a wildcard never reaches: audit access is always named (CONTRACT.md section 2).
NAMED_ONLY: frozenset[str] = frozenset({"AuditEvent"})

_SCOPE = re.compile(r"^(system|user|patient)/([A-Za-z]+|\*)\.([a-z*]+)$")
_CONTEXTS: dict[str, Context] = {"system": "system", "user": "user", "patient": "patient"}  # _SCOPE's first group


class ScopeError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Scope:
    context: Context
    name: str  # the resource as written (ours, a FHIR alias, or "*")
    resources: frozenset[str]  # our resource names; "*" for any
    perms: frozenset[str]
    text: str

    def allows(self, resource: str, perm: str) -> bool:
        if perm not in self.perms:
            return False
        return resource in self.resources or ("*" in self.resources and resource not in NAMED_ONLY)


@lru_cache(maxsize=4096)  # Scope is immutable; every request checks its route's scope, every token grant several
def parse_scope(text: str) -> Scope | None:
    """Parse one scope; ``None`` for a well-formed scope that grants nothing here (e.g. ``openid``).

    Raises ScopeError for a SMART-shaped scope that breaks the grammar (unknown resource, perms out of
    order or repeated), so a typo is never silently granted or silently ignored.
    """
    base = text.split("?", 1)[0]
    if text in CONTEXT_SCOPES:
        return None
    if "?" in text:
        return None  # query-restricted scopes are experimental in SMART v2; we grant nothing for them
    match = _SCOPE.match(base)
    if not match:
        if "/" in base:
            raise ScopeError(f"malformed scope: {text}")
        return None
    context, resource, perms = match.groups()
    if perms in V1_PERMS:
        perm_set = V1_PERMS[perms]
    else:
        if not perms or any(p not in PERMS for p in perms):
            raise ScopeError(f"unknown permissions in scope: {text}")
        ordered = "".join(p for p in PERMS if p in perms)
        if ordered != perms:
            raise ScopeError(f"permissions must be a subset of 'cruds' in that order: {text}")
        perm_set = perms
    if resource == "*":
        names = frozenset({"*"})
    elif resource in (known := resources()) or resource in FHIR_ALIASES:
        names = frozenset((resource,) if resource in known else ()) | frozenset(
            FHIR_ALIASES.get(resource, ())
        )
    else:
        raise ScopeError(f"unknown resource in scope: {text}")
    return Scope(context=_CONTEXTS[context], name=resource, resources=names, perms=frozenset(perm_set), text=text)


def parse_scopes(text: str | None) -> list[Scope]:
    scopes: list[Scope] = []
    for part in (text or "").split():
        parsed = parse_scope(part)
        if parsed is not None:
            scopes.append(parsed)
    return scopes


def scope_allows(granted: list[Scope], resource: str, perm: str) -> bool:
    return any(s.allows(resource, perm) for s in granted)


def grant(requested: str | None, allowed: str) -> str:
    """The granted scope: the intersection of what was asked and what the app is allowed.

    Asking for nothing grants everything the app is allowed. The intersection is taken per context,
    resource and permission, so asking ``system/Client.cruds`` of an app allowed ``system/*.rs``
    grants ``system/Client.rs``. A v1 scope granted whole is returned in its v1 form.
    """
    allowed_scopes = parse_scopes(allowed)
    if not requested or not requested.strip():
        return " ".join(s.text for s in allowed_scopes)
    granted: list[str] = []
    for want in parse_scopes(requested):
        for have in allowed_scopes:
            if have.context != want.context:
                continue
            perms = "".join(p for p in PERMS if p in want.perms and p in have.perms)
            if not perms:
                continue
            asked_as = want.text.rsplit(".", 1)[1]
            if V1_PERMS.get(asked_as) == perms:
                perms = asked_as  # SMART: v1 scopes asked, v1 scopes returned
            if "*" in want.resources:
                names = ["*"] if "*" in have.resources else sorted(have.resources - NAMED_ONLY)
            elif want.resources <= have.resources or ("*" in have.resources and not want.resources & NAMED_ONLY):
                names = [want.name]
            else:
                names = sorted(want.resources & have.resources)
            granted.extend(f"{want.context}/{name}.{perms}" for name in names)
    return " ".join(dict.fromkeys(granted))


def context_scopes(text: str | None) -> list[str]:
    """The SMART context scopes (``offline_access``, ``launch/patient``) in a scope string, in our order."""
    words = set((text or "").split())
    return [c for c in CONTEXT_SCOPES if c in words]


def grant_for_link(requested: str | None, allowed: str) -> str:
    """What a patient app gets through an app link: ``grant()`` of its patient/ scopes, plus the context scopes
    it holds (all of them when it asks for nothing, else those it asks for); ``launch/patient`` is granted
    whenever asked, since the link gives the patient context. Empty when no resource scope remains."""
    resources = grant(requested, allowed)
    if not resources:
        return ""
    held = context_scopes(allowed)
    if requested and requested.strip():
        asked = context_scopes(requested)
        extra = [c for c in asked if c in held or c == "launch/patient"]
    else:
        extra = held
    return " ".join([resources, *extra])


def is_narrowing(requested: str, original: str) -> bool:
    """Whether every scope in ``requested`` is within ``original`` (a refresh may narrow, never widen:
    RFC 6749 section 6)."""
    for word in requested.split():
        if word in CONTEXT_SCOPES:
            if word not in original.split():
                return False
        elif grant(word, original) != word:
            return False
    return True


def required_scope(resource: str, perm: str, context: Context = "system") -> str:
    return f"{context}/{resource}.{perm}"


def require(who: Principal, resource: str, perms: str, refuse: Callable[[str], Exception] = Forbidden) -> None:
    """The one scope check (REST dependencies, GraphQL fields, FHIR interactions, per-record checks).

    ``resource`` is ours, a FHIR alias or ``*``; each of ``perms`` must be allowed on it, or for an alias or ``*``
    on at least one resource it stands for (the records are then checked one by one). Otherwise raises
    ``refuse`` (a 403 ``Forbidden``; GraphQL passes its FORBIDDEN error) naming the scope in the token's context.
    """
    scope = parse_scope(required_scope(resource, perms))
    assert scope is not None
    reach = resources() if "*" in scope.resources else scope.resources
    for perm in perms:
        if not any(who.allows(name, perm) for name in reach):
            raise refuse(required_scope(resource, perms, who.context))
