"""Per-request context: the principal, scope checks cached per (resource, permission), and DataLoaders.

Every DataLoader batch runs in its own short transaction bound to the caller's tenant (``set_tenant``)
and starts from the principal-aware ``readable()`` statement: sibling resolvers run concurrently and
must never share one AsyncConnection.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from types import SimpleNamespace
from typing import Any
from uuid import UUID

from sqlalchemy import bindparam, func, select
from sqlalchemy.dialects.postgresql import distinct_on
from strawberry.dataloader import DataLoader
from strawberry.fastapi import BaseContext

from service.auth.principal import Principal
from service.auth.scopes import required_scope
from service.collections.registry import REGISTRY, Collection
from service.collections.repository import decode_cursor, readable
from service.collections.service import serialize
from service.db import tenant_transaction
from service.graphql.errors import forbidden

_NESTED = (dict, list)  # a tuple: ``dict | list`` would build a new union object on every call


def wrap(value: Any) -> Any:
    """Serialized records (dicts, JSON) as objects Strawberry's default resolvers can read attributes of."""
    if isinstance(value, dict):
        return SimpleNamespace(**{k: wrap(v) if isinstance(v, _NESTED) else v for k, v in value.items()})
    if isinstance(value, list):
        return [wrap(v) if isinstance(v, _NESTED) else v for v in value]
    return value


def record_obj(coll: Collection, data: dict[str, Any]) -> SimpleNamespace:
    """A serialized record as an object; output-only fields it lacks (e.g. safety_alert) are null."""
    obj = wrap({**dict.fromkeys(coll.out.model_fields), **data})
    obj._collection = coll.name  # lets the Node interface tell record types apart
    return obj  # type: ignore[no-any-return]


def record(coll: Collection, row: Any) -> SimpleNamespace:
    data = dict(row._mapping)
    data.pop("_rn", None)
    return record_obj(coll, serialize(coll, data))


@lru_cache(maxsize=1024)
def _children_statement(child_name: str, fk: str, org_id: UUID, patient_id: UUID | None, with_after: bool) -> Any:
    """Live children of many parents, at most ``per_parent`` each, in id order: one statement, built from
    the principal-aware ``readable()`` once per tenant (building the windowed subquery is not cheap)."""
    table = REGISTRY[child_name].table
    who = Principal(org_id=org_id, app_id="", subject="", patient_id=patient_id)
    base = readable(table, who).where(table.c[fk].in_(bindparam("parents", expanding=True)),
                                      table.c.deleted_at.is_(None))
    if with_after:
        base = base.where(table.c.id > bindparam("after"))
    rn = func.row_number().over(partition_by=table.c[fk], order_by=table.c.id).label("_rn")
    sub = base.add_columns(rn).subquery()
    return select(sub).where(sub.c._rn <= bindparam("per_parent")).order_by(sub.c[fk], sub.c.id)


class GraphQLContext(BaseContext):
    def __init__(self, who: Principal, app_ctx: Any) -> None:
        super().__init__()
        self.who = who
        self.engine = app_ctx.engine
        self._allowed: dict[tuple[str, str], bool] = {}
        self._loaders: dict[tuple[Any, ...], DataLoader[Any, Any]] = {}

    # ------------------------------------------------------------ scopes

    def require(self, resource: str, perm: str) -> None:
        """Raise FORBIDDEN unless the token allows it; parsed once, then a dictionary lookup."""
        key = (resource, perm)
        if key not in self._allowed:
            self._allowed[key] = self.who.allows(resource, perm)
        if not self._allowed[key]:
            raise forbidden(required_scope(resource, perm, self.who.context))  # type: ignore[arg-type]

    def transaction(self) -> Any:
        return tenant_transaction(self.engine, self.who.org_id, self.who.patient_id)

    # ------------------------------------------------------------ loaders

    def _loader(self, key: tuple[Any, ...], load: Any) -> DataLoader[Any, Any]:
        loader = self._loaders.get(key)
        if loader is None:
            loader = self._loaders[key] = DataLoader(load_fn=load)
        return loader

    def by_id(self, coll: Collection) -> DataLoader[UUID, SimpleNamespace | None]:
        async def load(ids: Sequence[UUID]) -> list[SimpleNamespace | None]:
            table = coll.table
            stmt = readable(table, self.who).where(table.c.id.in_(list(ids)), table.c.deleted_at.is_(None))
            async with self.transaction() as conn:
                rows = (await conn.execute(stmt)).all()
            found = {r.id: record(coll, r) for r in rows}
            return [found.get(i) for i in ids]

        return self._loader(("id", coll.name), load)

    def children(self, child: Collection, fk: str, first: int, after: str | None
                 ) -> DataLoader[UUID, list[SimpleNamespace]]:
        """Up to ``first + 1`` live children per parent, in id order, in one statement for all parents."""
        after_id = decode_cursor(after) if after else None
        stmt = _children_statement(child.name, fk, self.who.org_id, self.who.patient_id, after_id is not None)

        async def load(parent_ids: Sequence[UUID]) -> list[list[SimpleNamespace]]:
            params: dict[str, Any] = {"parents": list(parent_ids), "per_parent": first + 1}
            if after_id is not None:
                params["after"] = after_id
            async with self.transaction() as conn:
                rows = (await conn.execute(stmt, params)).all()
            grouped: dict[UUID, list[SimpleNamespace]] = {}
            for r in rows:
                grouped.setdefault(r._mapping[fk], []).append(record(child, r))
            return [grouped.get(p, []) for p in parent_ids]

        return self._loader(("children", child.name, fk, first, after), load)

    def latest_measurement(self) -> DataLoader[UUID, SimpleNamespace | None]:
        coll = REGISTRY["measurements"]

        async def load(marker_ids: Sequence[UUID]) -> list[SimpleNamespace | None]:
            table = coll.table
            stmt = (
                readable(table, self.who)
                .where(table.c.marker_id.in_(list(marker_ids)), table.c.deleted_at.is_(None))
                .ext(distinct_on(table.c.marker_id))
                .order_by(table.c.marker_id, table.c.observed_at.desc(), table.c.id.desc())
            )
            async with self.transaction() as conn:
                rows = (await conn.execute(stmt)).all()
            found = {r.marker_id: record(coll, r) for r in rows}
            return [found.get(m) for m in marker_ids]

        return self._loader(("latest_measurement",), load)
