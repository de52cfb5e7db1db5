"""Property tests of the one SMART scope parser, and of granting (the intersection of asked and allowed)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.auth.scopes import (
    FHIR_ALIASES,
    NAMED_ONLY,
    PERMS,
    RESOURCES,
    V1_PERMS,
    ScopeError,
    grant,
    parse_scope,
    parse_scopes,
)

CONTEXTS = ("system", "user", "patient")
NAMES = (*RESOURCES, *FHIR_ALIASES, "*")

contexts = st.sampled_from(CONTEXTS)
names = st.sampled_from(NAMES)
perm_sets = st.sets(st.sampled_from(PERMS), min_size=1).map(lambda ps: "".join(p for p in PERMS if p in ps))
v2_scopes = st.builds(lambda c, n, p: f"{c}/{n}.{p}", contexts, names, perm_sets)
v1_scopes = st.builds(lambda c, n, p: f"{c}/{n}.{p}", contexts, names, st.sampled_from(sorted(V1_PERMS)))
any_scope = st.one_of(v2_scopes, v1_scopes)
scope_strings = st.lists(any_scope, max_size=6).map(" ".join)


def expand(text: str) -> set[tuple[str, str, str]]:
    """Every (context, resource, perm) a scope string allows; '*' stands for any resource."""
    out = set()
    for s in parse_scopes(text):
        for res in s.resources:
            for perm in s.perms:
                out.add((s.context, res, perm))
    return out


def covered(triple: tuple[str, str, str], by: set[tuple[str, str, str]]) -> bool:
    """'*' covers any resource but AuditEvent (audit access is always named)."""
    ctx, res, perm = triple
    return (ctx, res, perm) in by or ((ctx, "*", perm) in by and res not in NAMED_ONLY)


@given(contexts, names, perm_sets)
def test_v2_round_trip(context, name, perms):
    text = f"{context}/{name}.{perms}"
    scope = parse_scope(text)
    assert scope is not None
    assert (scope.context, scope.name, scope.text) == (context, name, text)
    assert "".join(p for p in PERMS if p in scope.perms) == perms
    expected = {"*"} if name == "*" else set(FHIR_ALIASES.get(name, ())) | ({name} if name in RESOURCES else set())
    assert scope.resources == expected


@given(contexts, names, st.sampled_from(sorted(V1_PERMS)))
def test_v1_aliases(context, name, v1):
    scope = parse_scope(f"{context}/{name}.{v1}")
    assert scope is not None
    assert scope.perms == frozenset(V1_PERMS[v1])
    assert parse_scope(f"{context}/{name}.{V1_PERMS[v1]}").perms == scope.perms


@given(contexts, names, st.permutations(PERMS), st.integers(2, 5))
def test_perms_out_of_order_or_repeated_are_refused(context, name, perm, size):
    letters = "".join(perm[:size])
    if letters == "".join(p for p in PERMS if p in letters):
        return  # in order: valid
    with pytest.raises(ScopeError):
        parse_scope(f"{context}/{name}.{letters}")
    with pytest.raises(ScopeError):
        parse_scope(f"{context}/{name}.{letters[0]}{letters[0]}")


@pytest.mark.parametrize("bad", ["system/Nope.r", "system/Client.x", "system/Client.", "admin/Client.r",
                                 "system/Client.rr", "system/Client.sr", "system//Client.r", "system/Client.READ"])
def test_malformed_smart_scopes_are_errors(bad):
    with pytest.raises(ScopeError):
        parse_scope(bad)


@pytest.mark.parametrize("opaque", ["openid", "offline_access", "launch", "system/Observation.rs?category=x"])
def test_opaque_scopes_grant_nothing(opaque):
    assert parse_scope(opaque) is None
    assert grant(opaque, "system/*.cruds") == ""


@settings(max_examples=300)
@given(scope_strings, scope_strings)
def test_granted_never_exceeds_allowed_nor_asked(requested, allowed):
    granted = grant(requested, allowed)
    parse_scopes(granted)  # the grant is itself well-formed
    got, have, asked = expand(granted), expand(allowed), expand(requested)
    for triple in got:
        assert covered(triple, have), (triple, granted, allowed)
        assert not requested or covered(triple, asked), (triple, granted, requested)


@settings(max_examples=200)
@given(scope_strings, scope_strings)
def test_grant_keeps_everything_asked_that_is_allowed(requested, allowed):
    """Intersection, not just a subset: what was asked and is allowed is granted."""
    got = expand(grant(requested, allowed))
    have = expand(allowed)
    for ctx, res, perm in expand(requested):
        if res != "*" and covered((ctx, res, perm), have):
            assert covered((ctx, res, perm), got), (ctx, res, perm)


@given(scope_strings)
def test_asking_for_nothing_grants_the_apps_default(allowed):
    assert expand(grant(None, allowed)) == expand(allowed)
    assert expand(grant("  ", allowed)) == expand(allowed)


def test_grant_examples():
    assert grant("system/Client.cruds", "system/*.rs") == "system/Client.rs"
    assert grant("system/*.rs", "system/Client.r system/Goal.cruds") == "system/Client.r system/Goal.rs"
    assert grant("patient/Client.rs", "system/*.cruds") == ""
    assert grant("system/Observation.read", "system/Measurement.rs") == "system/Measurement.read"
    assert grant("system/Client.read", "system/*.cruds") == "system/Client.read"  # v1 asked, v1 returned
    assert grant("system/Client.write", "system/Client.cu") == "system/Client.cu"  # not whole: v2 letters
    assert grant("system/Client.*", "system/*.cruds") == "system/Client.*"
    assert grant("system/Patient.rs", "system/Client.r") == "system/Patient.r"


async def test_token_endpoint_grants_the_intersection(api):
    """Through HTTP: asked ∩ allowed is granted; asking for nothing gives the default; nothing in common is
    invalid_scope; a malformed scope is invalid_scope."""
    from tests.support.oauth import register

    org = await api.org()
    creds = await register(api, org, "system/Client.rs system/Goal.cruds")
    auth = (creds["client_id"], creds["client_secret"])

    async def ask(scope):
        data = {"grant_type": "client_credentials", **({"scope": scope} if scope is not None else {})}
        return await api.http.post("/oauth/token", data=data, auth=auth)

    assert (await ask("system/Client.cruds system/Goal.d")).json()["scope"] == "system/Client.rs system/Goal.d"
    assert (await ask(None)).json()["scope"] == "system/Client.rs system/Goal.cruds"
    for scope in ("system/Strength.r", "system/Client.sr"):
        resp = await ask(scope)
        assert (resp.status_code, resp.json()["error"]) == (400, "invalid_scope")
    token = (await ask("system/Client.r")).json()["access_token"]
    assert (await api.client(token).get("/v1/clients")).status_code == 403  # granted r, not s


def test_every_perm_combination_parses_once_in_order():
    combos = ["".join(c) for n in range(1, 6) for c in itertools.combinations(PERMS, n)]
    assert len(combos) == 31
    for combo in combos:
        assert parse_scope(f"system/Client.{combo}") is not None
