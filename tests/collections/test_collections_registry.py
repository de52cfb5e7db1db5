"""The registry is the one source of truth: every collection has what the rest of the service derives from it, and
a collection registered by a test alone (docs/adding-a-collection.md) is served over HTTP."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import pytest
from pydantic import Field
from sqlalchemy.orm import DeclarativeBase, Mapped

from service.app import create_app
from service.auth.scopes import parse_scope, resources
from service.collections.registry import REGISTRY, Collection
from service.collections.schemas import schemas
from service.collections.types import ExternalIds, ShortText, Strict
from service.domain.registry import COLLECTIONS
from service.models.base import ClientOwnedMixin
from service.ops.purge import erasure_order
from service.settings import Settings
from tests.support import factories
from tests.support.harness import Api, Database


def test_every_collection_has_its_scope_purge_entry_factory_and_openapi_paths() -> None:
    assert list(REGISTRY.values()) == COLLECTIONS
    paths = create_app(Settings(database_url="postgresql+asyncpg://unused@localhost/unused")).openapi()["paths"]
    erased = [c.name for c in erasure_order()]
    assert sorted(erased) == sorted(REGISTRY)
    assert erased[-1] == "clients"
    assert list(factories.PATCHES) == list(REGISTRY)
    for coll in COLLECTIONS:
        assert coll.resource in resources(), coll.name
        scope = parse_scope(f"system/{coll.resource}.cruds")
        assert scope is not None
        assert coll.resource in scope.resources
        for path in (f"/v1/{coll.name}", f"/v1/{coll.name}/{{{coll.type_name}_id}}",
                     f"/v1/history/{coll.name}/{{record_id}}"):
            assert path in paths, path
    owner = next(c for c in COLLECTIONS if c.identity)
    assert set(owner.children) == {c.name for c in COLLECTIONS if c.client_owned}  # ?include= on a client


class ToyModels(DeclarativeBase):
    """Its own metadata: the service's (Base.metadata) stays what the migrations build."""


class Toy(ToyModels, ClientOwnedMixin):
    """The model of the checklist (service/models/), with the columns every client-owned record shares."""

    __tablename__ = "toys"
    client_id: Mapped[UUID]
    name: Mapped[str]


TOYS = Toy.__table__


# What the migration would do: the table, the service role's grants, row-level security as on every collection.
MIGRATION = [
    """CREATE TABLE toys (
         org_id uuid NOT NULL, id uuid NOT NULL, client_id uuid NOT NULL, name text NOT NULL,
         created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now(),
         version integer NOT NULL DEFAULT 1, deleted_at timestamptz, external_ids jsonb NOT NULL DEFAULT '[]',
         PRIMARY KEY (org_id, id), FOREIGN KEY (org_id, client_id) REFERENCES clients (org_id, id))""",
    "GRANT SELECT, INSERT, UPDATE ON toys TO {role}",
    "ALTER TABLE toys ENABLE ROW LEVEL SECURITY",
    "CREATE POLICY tenant_isolation ON toys USING (org_id = app_org()) WITH CHECK (org_id = app_org())",
    "CREATE POLICY patient_scope ON toys AS RESTRICTIVE USING (app_patient() IS NULL OR client_id = app_patient()) "
    "WITH CHECK (app_patient() IS NULL OR client_id = app_patient())",
]


class ToyIn(Strict):
    client_id: UUID
    name: ShortText
    external_ids: ExternalIds = Field(default_factory=list)


def toy_collection() -> Collection:
    """The one domain module of the checklist, in a test."""
    create, patch, out = schemas(ToyIn)
    return Collection(name="toys", type_name="toy", resource="Toy", title="Toys", table=TOYS,
                      create=create, patch=patch, out=out, description="A collection only this test knows.")


@pytest.fixture
async def toys(db: Database, monkeypatch: pytest.MonkeyPatch) -> Any:
    role = db.settings().app_role
    for statement in MIGRATION:
        await db.fetch(statement.format(role=role))
    toy = toy_collection()
    monkeypatch.setitem(REGISTRY, toy.name, toy)  # registered for this test only
    async with Api.start(db, app=create_app(db.settings(), collections=[*COLLECTIONS, toy])) as api:
        yield api


async def test_a_collection_registered_by_a_test_is_created_read_and_listed_over_http(toys: Api) -> None:
    org = await toys.org()
    c = toys.client(await toys.token(org, "system/Client.cruds system/Toy.cruds"))
    client = await factories.create(c, "clients")
    r = await c.post("/v1/toys", json={"client_id": client["id"], "name": "kite"})
    assert r.status_code == 201, r.text
    toy = r.json()
    assert toy["name"] == "kite"
    assert toy["version"] == 1
    assert toy["client_id"] == client["id"]
    assert datetime.fromisoformat(toy["created_at"])
    assert r.headers["Location"] == f"/v1/toys/{toy['id']}"
    read = await c.get(f"/v1/toys/{toy['id']}")
    assert read.status_code == 200
    assert read.json() == toy
    assert read.headers["ETag"] == 'W/"1"'
    listed = await c.get("/v1/toys", params={"client_id": client["id"]})
    assert listed.status_code == 200
    assert [t["id"] for t in listed.json()["data"]] == [toy["id"]]
    history = await c.get(f"/v1/history/toys/{toy['id']}")
    assert history.status_code == 200
    assert [h["action"] for h in history.json()["data"]] == ["created"]
    # Its scope resource comes from the registry: a token without it is refused, naming the scope.
    other = toys.client(await toys.token(org, "system/Client.cruds"))
    refused = await other.get(f"/v1/toys/{toy['id']}")
    assert refused.status_code == 403
    assert 'scope="system/Toy.r"' in refused.headers["WWW-Authenticate"]
    # Another organization's toy is not found, as for every collection.
    stranger = toys.client(await toys.token(await toys.org("Other"), "system/Toy.cruds"))
    assert (await stranger.get(f"/v1/toys/{toy['id']}")).status_code == 404
