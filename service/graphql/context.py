"""Per-request context: the principal, scope checks cached per (resource, permission), and DataLoaders.

Every DataLoader batch runs in its own short transaction bound to the caller's tenant (``set_tenant``)
and starts from the principal-aware ``readable()`` statement: sibling resolvers run concurrently and
must never share one AsyncConnection.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from uuid import UUID

from sqlalchemy import any_, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY, distinct_on
from strawberry.dataloader import DataLoader
from strawberry.fastapi import BaseContext

from service.auth.principal import Principal
from service.auth.scopes import required_scope
from service.collections.registry import REGISTRY, Collection
from service.collections.repository import CompiledRead, after_row, param, readable_record
from service.collections.service import serialize
from service.db import tenant_transaction
from service.graphql.errors import forbidden
from service.graphql.execution import READERS

if TYPE_CHECKING:
    from service.graphql.prefetch import Relation

_NESTED = (dict, list)  # a tuple: ``dict | list`` would build a new union object on every call


class Obj:
    """A serialized record (or a nested JSON object) whose keys read as attributes, for Strawberry's default
    resolvers. Nested objects are wrapped when a field reads them, not up front: a query selects a few of
    a record's fields. Keys it lacks raise AttributeError, as a missing attribute does."""

    __slots__ = ("_collection", "_data", "_pre")

    def __init__(self, data: dict[str, Any], collection: str | None = None) -> None:
        self._data = data
        self._pre: dict[Any, Any] | None = None  # relations loaded ahead for the query (see prefetch.py)
        if collection is not None:  # lets the Node interface tell record types apart (schema._is_type_of);
            self._collection = collection  # a nested object has none, and matches its field's type

    def __getattr__(self, name: str) -> Any:
        try:
            value = self._data[name]
        except KeyError:
            raise AttributeError(name) from None
        return wrap(value) if isinstance(value, _NESTED) else value

    def read(self, name: str) -> Any:
        """``getattr(self, name)``, without Python's failed attribute lookup first for a field name (the
        executor reads thousands of leaves this way: execution.READERS)."""
        return getattr(self, name) if name in _OWN else Obj.__getattr__(self, name)


_OWN = frozenset(dir(Obj))  # names getattr finds on the object itself rather than in its data
READERS[Obj] = Obj.read


def wrap(value: Any) -> Any:
    """Serialized records (dicts, JSON) as objects Strawberry's default resolvers can read attributes of."""
    if isinstance(value, dict):
        return Obj(value)
    if isinstance(value, list):
        return [wrap(v) if isinstance(v, _NESTED) else v for v in value]
    return value


def record_obj(coll: Collection, data: dict[str, Any]) -> Obj:
    """A serialized record as an object; output-only fields it lacks (e.g. safety_alert) are null."""
    return Obj({**_nulls(coll.name), **data}, coll.name)


@lru_cache(maxsize=64)
def _nulls(coll_name: str) -> dict[str, None]:
    return dict.fromkeys(REGISTRY[coll_name].out.model_fields)


def record(coll: Collection, row: Any) -> Obj:
    return record_obj(coll, serialize(coll, row))


def _any(name: str, table: Any, column: str) -> Any:
    """``column = ANY($ids)``: one statement (and one prepared plan) whatever the number of ids."""
    return table.c[column] == any_(bindparam(name, None, type_=ARRAY(table.c[column].type)))


@lru_cache(maxsize=256)
def _by_id_read(coll_name: str) -> CompiledRead:
    coll = REGISTRY[coll_name]
    table = coll.table
    return CompiledRead(lambda who: readable_record(coll, who).where(_any("ids", table, "id"),
                                                                     table.c.deleted_at.is_(None)))


@lru_cache(maxsize=256)
def _children_read(child_name: str, fk: str, with_after: bool) -> CompiledRead:
    """Live children of many parents, at most ``per_parent`` each, in the child's list order: one statement."""
    child = REGISTRY[child_name]
    table = child.table

    def build(who: Principal) -> Any:
        base = readable_record(child, who).where(_any("parents", table, fk), table.c.deleted_at.is_(None))
        if with_after:
            base = base.where(after_row(child, who, param("after")))
        rn = func.row_number().over(partition_by=table.c[fk], order_by=child.list_keys()).label("_rn")
        sub = base.add_columns(rn).subquery()
        names = [c.name for c in table.c] + list(child.computed)
        return (select(*(sub.c[n] for n in names)).where(sub.c._rn <= param("per_parent"))
                .order_by(sub.c[fk], sub.c._rn))

    return CompiledRead(build)


@lru_cache(maxsize=1)
def _latest_read() -> CompiledRead:
    coll = REGISTRY["measurements"]
    table = coll.table
    return CompiledRead(lambda who: readable_record(coll, who)
                        .where(_any("markers", table, "marker_id"), table.c.deleted_at.is_(None))
                        .ext(distinct_on(table.c.marker_id))
                        .order_by(table.c.marker_id, table.c.observed_at.desc(), table.c.id.desc()))


# ---------------------------------------------------------------- batch reads (DataLoaders and prefetch)


async def load_by_id(conn: Any, who: Principal, coll: Collection, ids: Sequence[UUID]) -> dict[UUID, Obj]:
    """Live records of ``coll`` among ``ids`` that the principal may read, by id: one statement."""
    rows = await _by_id_read(coll.name).fetch(conn, who, ids=list(ids))
    return {r["id"]: record(coll, r) for r in rows}


async def load_children(conn: Any, who: Principal, child: Collection, fk: str, parent_ids: Sequence[UUID],
                        first: int, after_id: UUID | None) -> dict[UUID, list[Obj]]:
    """Up to ``first + 1`` live children per parent, in id order, in one statement for all parents."""
    params: dict[str, Any] = {"parents": list(parent_ids), "per_parent": first + 1}
    if after_id is not None:
        params["after"] = after_id
    rows = await _children_read(child.name, fk, after_id is not None).fetch(conn, who, **params)
    grouped: dict[UUID, list[Obj]] = {}
    for r in rows:
        grouped.setdefault(r[fk], []).append(record(child, r))
    return grouped


async def load_latest(conn: Any, who: Principal, marker_ids: Sequence[UUID]) -> dict[UUID, Obj]:
    """The most recent live measurement of each marker (by observed_at), by marker id: one statement."""
    coll = REGISTRY["measurements"]
    rows = await _latest_read().fetch(conn, who, markers=list(marker_ids))
    return {r["marker_id"]: record(coll, r) for r in rows}


class GraphQLContext(BaseContext):
    def __init__(self, who: Principal, app_ctx: Any) -> None:
        super().__init__()
        self.who = who
        self.engine = app_ctx.engine
        self._allowed: dict[tuple[str, str], bool] = {}
        self._loaders: dict[tuple[Any, ...], DataLoader[Any, Any]] = {}

    # ------------------------------------------------------------ scopes

    def allows(self, resource: str, perm: str) -> bool:
        """Whether the token allows it; parsed once, then a dictionary lookup."""
        allowed = self._allowed.get((resource, perm))
        if allowed is None:
            allowed = self._allowed[(resource, perm)] = self.who.allows(resource, perm)
        return allowed

    def require(self, resource: str, perm: str) -> None:
        """Raise FORBIDDEN unless the token allows it."""
        if not self.allows(resource, perm):
            raise forbidden(required_scope(resource, perm, self.who.context))  # type: ignore[arg-type]

    def transaction(self) -> Any:
        return tenant_transaction(self.engine, self.who.org_id, self.who.patient_id)

    # ------------------------------------------------------------ loaders: what prefetch.py did not load

    def _loader(self, key: tuple[Any, ...], load: Any) -> DataLoader[Any, Any]:
        loader = self._loaders.get(key)
        if loader is None:
            loader = self._loaders[key] = DataLoader(load_fn=load)
        return loader

    def by_id(self, coll: Collection) -> DataLoader[UUID, Obj | None]:
        async def load(ids: Sequence[UUID]) -> list[Obj | None]:
            async with self.transaction() as conn:
                found = await load_by_id(conn, self.who, coll, ids)
            return [found.get(i) for i in ids]

        return self._loader(("id", coll.name), load)

    def relation(self, rel: Relation, args: tuple[Any, ...]) -> DataLoader[Obj, Any]:
        """The relation's value for parent records, batched with the sibling resolvers that ask for it."""
        async def load(parents: Sequence[Obj]) -> list[Any]:
            async with self.transaction() as conn:
                return await rel.load(conn, self.who, parents, args)

        return self._loader(("relation", rel, args), load)
