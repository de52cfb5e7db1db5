"""A read with ``?include=`` answers what the OpenAPI document declares for it (the response schemas forbid
undeclared keys, so an included child list must be declared; found by schemathesis against the live server)."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator

from service.collections.registry import REGISTRY
from tests.support.factories import create

ALL = "system/*.cruds"
PARENTS = [name for name, coll in REGISTRY.items() if coll.children]


def test_some_collections_have_children() -> None:
    assert {"clients", "goals"} <= set(PARENTS), PARENTS


@pytest.mark.parametrize("name", PARENTS)
async def test_read_with_every_include_matches_the_declared_schema(api: Any, name: str) -> None:
    c = api.client(await api.token(await api.org(), ALL))
    coll = REGISTRY[name]
    parent = await create(c, name)
    client_id = parent["id"] if name == "clients" else parent["client_id"]
    for child_name, field in coll.children.items():
        refs = {field: parent["id"]} if field == "client_id" else {field: parent["id"], "client_id": client_id}
        await create(c, child_name, **refs)
    includes = ",".join(REGISTRY[n].key for n in coll.children)

    r = await c.get(f"/v1/{name}/{parent['id']}", params={"include": includes})
    assert r.status_code == 200, r.text
    body = r.json()
    for child_name in coll.children:
        assert len(body[REGISTRY[child_name].key]) >= 1, (child_name, body)

    doc = (await c.get("/openapi.json")).json()
    op = doc["paths"][f"/v1/{name}/{{{coll.type_name}_id}}"]["get"]
    schema = {**op["responses"]["200"]["content"]["application/json"]["schema"], "components": doc["components"]}
    errors = [(e.json_path, e.message) for e in Draft202012Validator(schema).iter_errors(body)]
    assert not errors, errors
