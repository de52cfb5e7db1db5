"""Resolvers generated per collection: relations of a record type, root queries and mutations.

Each resolver checks its scope once (a cached lookup in the context), then reads through a DataLoader or
calls the service layer (service.create / patch / delete / list_page): no second copy of validation or
access filtering. NotFound and Gone resolve to null, as CONTRACT.md section 5 says.
"""

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from uuid import UUID

import strawberry
from pydantic import ValidationError

from service import audit
from service.collections import service
from service.collections.registry import REGISTRY, Collection
from service.collections.repository import encode_cursor
from service.errors import DomainError, Gone, NotFound, ValidationFailed
from service.graphql.context import GraphQLContext, record_obj, wrap
from service.graphql.errors import forbidden, from_domain, from_pydantic
from service.graphql.limits import DEFAULT_FIRST, ROOT_FIRST, check_page
from service.graphql.prefetch import MISSING, Relation, prefetch, prefetched, relations_of
from service.graphql.typegen import Node, PageInfo, Types, plain

P = inspect.Parameter


@contextmanager
def _domain_errors() -> Iterator[None]:
    """NotFound and Gone resolve to null (the caller returns None); other domain errors become GraphQL errors."""
    try:
        yield
    except DomainError as exc:
        if not isinstance(exc, NotFound | Gone):
            raise from_domain(exc) from exc


def _guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with ``_domain_errors`` applied. A synchronous resolver stays synchronous (it may return an
    awaitable, which is guarded the same way)."""
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def run(*args: Any, **kwargs: Any) -> Any:
            return await _awaited(fn(*args, **kwargs))

        return run

    @functools.wraps(fn)
    def run_sync(*args: Any, **kwargs: Any) -> Any:
        with _domain_errors():
            result = fn(*args, **kwargs)
            return _awaited(result) if inspect.isawaitable(result) else result
        return None

    return run_sync


async def _awaited(pending: Awaitable[Any]) -> Any:
    with _domain_errors():
        return await pending
    return None


def field(fn: Callable[..., Any], returns: Any, params: list[tuple[str, Any, Any]] | None = None, *, root: bool = True,
          description: str | None = None, direct: bool = False) -> Any:
    """A Strawberry field whose resolver takes ``root``, ``info`` and the given keyword arguments.

    ``direct``: the resolver reads nothing of ``info`` but ``info.context`` and its arguments need no conversion
    (scalars named alike in GraphQL and Python), so graphql-core may call it itself (execution.resolve_directly).
    """
    sig = [P("root", P.POSITIONAL_OR_KEYWORD)] if root else []
    sig.append(P("info", P.POSITIONAL_OR_KEYWORD, annotation=strawberry.Info))
    sig += [P(name, P.KEYWORD_ONLY, annotation=annotation, default=default) for name, annotation, default in
            params or []]
    wrapped = _guarded(fn)
    wrapped.__signature__ = inspect.Signature(sig, return_annotation=returns)  # type: ignore[attr-defined]
    wrapped.__annotations__ = {p.name: p.annotation for p in sig if p.annotation is not P.empty} | {"return": returns}
    wrapped.resolves_directly = direct  # type: ignore[attr-defined]
    return strawberry.field(resolver=wrapped, description=description)


def _ctx(info: Any) -> GraphQLContext:
    return info.context  # type: ignore[no-any-return]


class Edge:
    """An edge of any connection type (edge types have no type check): its cursor is encoded if selected."""

    __slots__ = ("node",)

    def __init__(self, node: Any) -> None:
        self.node = node

    @property
    def cursor(self) -> str:
        return encode_cursor(self.node.id)


def connection(types: Types, coll: Collection, nodes: list[Any], has_next: bool) -> Any:
    page = PageInfo(has_next_page=has_next, end_cursor=encode_cursor(nodes[-1].id) if nodes else None)
    return types.connections[coll.name](edges=[Edge(n) for n in nodes], page_info=page)


# ---------------------------------------------------------------- relations of a record type


def relations(types: Types, coll: Collection) -> dict[str, Any]:
    return {name: _relation_field(types, rel) for name, rel in relations_of(coll.name).items()}


def _relation_field(types: Types, rel: Relation) -> Any:
    """Synchronous when the value was prefetched (no coroutine per field and record); else a DataLoader's."""
    target = rel.target

    def value(root: Any, ctx: GraphQLContext, args: tuple[Any, ...], shape: Callable[[Any], Any]) -> Any:
        found = prefetched(root, (rel.name, args))
        if found is not MISSING:
            return shape(found)
        return _shaped(ctx.relation(rel, args).load(root), shape)

    if rel.kind == "children":
        def children(root: Any, info: Any, first: int = DEFAULT_FIRST, after: str | None = None) -> Any:
            ctx = _ctx(info)
            ctx.require(target.resource, rel.perm)
            check_page(first, after)  # a bad cursor is refused here, before any transaction
            return value(root, ctx, (first, after),
                         lambda rows: connection(types, target, rows[:first], len(rows) > first))

        return field(children, types.connections[target.name] | None,
                     [("first", int, DEFAULT_FIRST), ("after", str | None, None)],
                     description=f"Live {target.title.lower()} of this record, in {_order(target)}", direct=True)

    def resolve(root: Any, info: Any) -> Any:
        ctx = _ctx(info)
        ctx.require(target.resource, rel.perm)
        return value(root, ctx, (), _same)

    if rel.kind == "many":
        returns: Any = list[types.record_types[target.name]] | None  # type: ignore[name-defined]
        description = f"The {target.title.lower()} named by {rel.attr}"
    elif rel.kind == "one":
        returns = types.record_types[target.name] | None
        description = f"The {target.type_name.replace('_', ' ')} named by {rel.attr}"
    else:
        returns = types.record_types[target.name] | None
        description = "The most recent measurement of this marker (by observed_at)"
    return field(resolve, returns, description=description, direct=True)


def _same(value: Any) -> Any:
    return value


async def _shaped(pending: Awaitable[Any], shape: Callable[[Any], Any]) -> Any:
    return shape(await pending)


# ---------------------------------------------------------------- root queries


def query_fields(types: Types, coll: Collection) -> dict[str, Any]:
    record_type = types.record_types[coll.name]

    async def one(info: Any, **kwargs: Any) -> Any:
        ctx = _ctx(info)
        ctx.require(coll.resource, "r")
        return await ctx.by_id(coll).load(kwargs["id"])

    async def many(info: Any, first: int, after: str | None, **filters: Any) -> Any:
        ctx = _ctx(info)
        ctx.require(coll.resource, "s")
        check_page(first)  # the cursor is service.list_page's
        if "identifier" in filters:
            filters["external_id"] = filters.pop("identifier")
        since = filters.get("updated_since")
        if isinstance(since, datetime) and since.utcoffset() is None:
            raise ValidationFailed.on("updated_since", "A timestamp needs a time zone offset", "timezone_required")
        async with ctx.transaction() as conn:
            data, next_cursor = await service.list_page(conn, ctx.who, coll, filters=filters, limit=first,
                                                        cursor=after)
            records = [record_obj(coll, d) for d in data]
            await prefetch(ctx, conn, coll, records, info)
        return connection(types, coll, records, next_cursor is not None)

    params: list[tuple[str, Any, Any]] = [("first", int, ROOT_FIRST), ("after", str | None, None)]
    if coll.client_owned:
        params.append(("client_id", UUID | None, None))
    if "status" in coll.table.c:
        params.append(("status", types.output(coll.out.model_fields["status"].annotation) | None, None))
    params.append(("updated_since", datetime | None, None))
    params.append(("identifier" if coll.name == "clients" else "external_id", str | None, None))
    params += [(name, UUID | None, None) for name in coll.filters]
    noun = coll.type_name.replace("_", " ")
    return {
        coll.type_name: field(one, record_type | None, [("id", UUID, P.empty)], root=False,
                              description=f"A {noun} by id; null if it does not exist, was deleted, or is not yours"),
        coll.key: field(many, types.connections[coll.name], params, root=False,
                        description=f"{coll.title}, in {_order(coll)}, with the REST filters"),
    }


def _order(coll: Collection) -> str:
    return "their list order (as REST lists them)" if coll.order else "id order"


def node_field() -> Any:
    async def node(info: Any, **kwargs: Any) -> Any:
        ctx = _ctx(info)
        readable = [c for c in REGISTRY.values() if ctx.who.allows(c.resource, "r")]
        if not readable:
            raise forbidden(f"{ctx.who.context}/*.r")
        found = await asyncio.gather(*(ctx.by_id(c).load(kwargs["id"]) for c in readable))
        return next((r for r in found if r is not None), None)

    return field(node, Node | None, [("id", UUID, P.empty)], root=False,
                 description="Any record by id, among the collections the token may read; null if none has it")


# ---------------------------------------------------------------- mutations


def _validate(model: Any, data: Any) -> Any:
    try:
        return model.model_validate(plain(data))
    except ValidationError as exc:
        raise from_pydantic(exc) from exc


def _if_match(expected_version: int | None) -> str | None:
    return None if expected_version is None else f'W/"{expected_version}"'


def mutation_fields(types: Types, coll: Collection) -> dict[str, Any]:
    record_type = types.record_types[coll.name]
    noun = coll.type_name.replace("_", " ")

    async def create(info: Any, **kwargs: Any) -> Any:
        ctx = _ctx(info)
        ctx.require(coll.resource, "c")
        body = _validate(coll.create, kwargs["input"])
        async with ctx.transaction() as conn:
            out = await service.create(conn, ctx.who, coll, body)
            await audit.flush(conn, ctx.who)
        return record_obj(coll, out)

    async def update(info: Any, **kwargs: Any) -> Any:
        ctx = _ctx(info)
        ctx.require(coll.resource, "u")
        body = _validate(coll.patch, kwargs["input"])
        async with ctx.transaction() as conn:
            out = await service.patch(conn, ctx.who, coll, kwargs["id"], body, _if_match(kwargs["expected_version"]))
            await audit.flush(conn, ctx.who)
        return record_obj(coll, out)

    async def delete(info: Any, **kwargs: Any) -> Any:
        ctx = _ctx(info)
        ctx.require(coll.resource, "d")
        async with ctx.transaction() as conn:
            await service.delete(conn, ctx.who, coll, kwargs["id"], _if_match(kwargs["expected_version"]))
            await audit.flush(conn, ctx.who)
        return kwargs["id"]

    version = ("expected_version", int | None, None)
    fields = {
        f"create_{coll.type_name}": field(
            create, record_type | None, [("input", types.create_input(coll), P.empty)], root=False,
            description=f"Create a {noun} (the same validation as POST /v1/{coll.name})"),
        f"update_{coll.type_name}": field(
            update, record_type | None, [("id", UUID, P.empty), ("input", types.patch_input(coll), P.empty), version],
            root=False, description=f"Update a {noun}; null if it does not exist or is not yours"),
    }
    if coll.deletable:
        fields[f"delete_{coll.type_name}"] = field(
            delete, UUID | None, [("id", UUID, P.empty), version], root=False,
            description=f"Delete a {noun}; returns its id, or null if it does not exist or is not yours")
    return fields


__all__ = ["connection", "mutation_fields", "query_fields", "relations", "wrap"]
