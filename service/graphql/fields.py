"""Resolvers generated per collection: relations of a record type, root queries and mutations.

A thin layer over the compiled reads (``reads.py``): a root field checks its scope and arguments, then reads its
whole selection in one statement on the query's unit of work and returns the values; a relation field checks its
scope (and page arguments) and returns the value its parent already holds. A mutation calls the service layer
(service.create / patch / delete) in its own unit of work and reads its answer back the same way. No second copy of
validation or access filtering; NotFound and Gone resolve to null, as CONTRACT.md section 5 says.
"""

import functools
import inspect
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any
from uuid import UUID

import orjson
import strawberry
from pydantic import ValidationError

from service.collections import service
from service.collections.registry import REGISTRY, Collection
from service.collections.types import list_of
from service.errors import DomainError, Gone, NotFound, timed_out
from service.graphql.context import GraphQLContext
from service.graphql.errors import forbidden, from_domain, from_pydantic
from service.graphql.limits import DEFAULT_FIRST, ROOT_FIRST, check_page
from service.graphql.reads import filter_names, plan_node, plan_one, plan_page, run
from service.graphql.relations import Relation, relations_of
from service.graphql.shapes import page_key
from service.graphql.specs import record_specs
from service.graphql.typegen import Node, Types, plain

P = inspect.Parameter


class _DomainErrors:
    """NotFound and Gone resolve to null (the caller returns None); other domain errors become GraphQL errors.

    A class, its ``__exit__`` returning bool, so a type checker sees that the block may end without returning."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> bool:
        if isinstance(exc, NotFound | Gone):
            return True
        if isinstance(exc, DomainError):
            raise from_domain(exc) from exc
        late = timed_out(exc) if exc is not None else None
        if late is not None:  # the database's time limit: an error to send again, not one masked as a bug
            raise from_domain(late) from exc
        return False


def _guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with ``_DomainErrors`` applied. A synchronous resolver stays synchronous (it may return an
    awaitable, which is guarded the same way)."""
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def run(*args: Any, **kwargs: Any) -> Any:
            return await _awaited(fn(*args, **kwargs))

        return run

    @functools.wraps(fn)
    def run_sync(*args: Any, **kwargs: Any) -> Any:
        with _DomainErrors():
            result = fn(*args, **kwargs)
            return _awaited(result) if inspect.isawaitable(result) else result
        return None

    return run_sync


async def _awaited(pending: Awaitable[Any]) -> Any:
    with _DomainErrors():
        return await pending
    return None


def field(fn: Callable[..., Any], returns: Any, params: list[tuple[str, Any, Any]] | None = None, *, root: bool = True,
          description: str | None = None) -> Any:
    """A Strawberry field whose resolver takes ``root``, ``info`` and the given keyword arguments."""
    sig = [P("root", P.POSITIONAL_OR_KEYWORD)] if root else []
    sig.append(P("info", P.POSITIONAL_OR_KEYWORD, annotation=strawberry.Info))
    sig += [P(name, P.KEYWORD_ONLY, annotation=annotation, default=default) for name, annotation, default in
            params or []]
    wrapped = _guarded(fn)
    # Functions do not declare __signature__ to a checker; inspect, hence Strawberry, reads it.
    wrapped.__signature__ = inspect.Signature(sig, return_annotation=returns)  # type: ignore[attr-defined]
    wrapped.__annotations__ = {p.name: p.annotation for p in sig if p.annotation is not P.empty} | {"return": returns}
    return strawberry.field(resolver=wrapped, description=description)


def _ctx(info: strawberry.Info[GraphQLContext, Any]) -> GraphQLContext:
    return info.context


# ---------------------------------------------------------------- relations of a record type


def relations(types: Types, coll: Collection) -> dict[str, Any]:
    return {name: _relation_field(types, rel) for name, rel in relations_of(coll.name).items()}


class NotCompiled(Exception):
    """A relation's value is missing from its parent: a bug of the compiler (masked, logged)."""


def _compiled(root: Any, key: str) -> Any:
    try:
        return root[key]
    except (KeyError, TypeError):
        raise NotCompiled(key) from None


def _relation_field(types: Types, rel: Relation) -> Any:
    """The value the compiled statement put in the parent (under the key ``shapes`` gives it); the scope and page
    arguments checked first, so a refused relation is an error of this field (and was never read)."""
    target = rel.target

    if rel.kind == "children":
        def children(root: Any, info: Any, first: int = DEFAULT_FIRST, after: str | None = None) -> Any:
            _ctx(info).require(target.resource, rel.perm)
            check_page(first, after)
            return _compiled(root, page_key(info.path.key, first, after))

        return field(children, types.connections[target.name] | None,
                     [("first", int, DEFAULT_FIRST), ("after", str | None, None)],
                     description=f"Live {target.title.lower()} of this record, in {_order(target)}")

    def resolve(root: Any, info: Any) -> Any:
        _ctx(info).require(target.resource, rel.perm)
        return _compiled(root, info.path.key)

    if rel.kind == "many":
        returns: Any = list_of(types.record_types[target.name]) | None
        description = f"The {target.title.lower()} named by {rel.attr}"
    elif rel.kind == "one":
        returns = types.record_types[target.name] | None
        description = f"The {target.type_name.replace('_', ' ')} named by {rel.attr}"
    else:
        returns = types.record_types[target.name] | None
        description = "The most recent measurement of this marker (by observed_at)"
    return field(resolve, returns, description=description)


# ---------------------------------------------------------------- root queries


def _loaded(value: bytes | None) -> Any:
    return None if value is None else orjson.loads(value)


def query_fields(types: Types, coll: Collection) -> dict[str, Any]:
    record_type = types.record_types[coll.name]

    async def one(info: Any, **kwargs: Any) -> Any:
        ctx = _ctx(info)
        ctx.require(coll.resource, "r")
        variables = info.variable_values
        plan = plan_one(ctx.doc(variables), ctx.root_nodes(info.operation, info.path.key, variables), coll,
                        kwargs["id"], ctx.allows, "resolvers")
        async with ctx.connection() as conn:
            return _loaded(await run(conn, ctx.who, plan))

    async def many(info: Any, first: int, after: str | None, **filters: Any) -> Any:
        ctx = _ctx(info)
        ctx.require(coll.resource, "s")
        variables = info.variable_values
        plan = plan_page(ctx.doc(variables), ctx.root_nodes(info.operation, info.path.key, variables), coll, first,
                         after, filters, ctx.allows, "resolvers")
        async with ctx.connection() as conn:
            return _loaded(await run(conn, ctx.who, plan))

    params: list[tuple[str, Any, Any]] = [("first", int, ROOT_FIRST), ("after", str | None, None)]
    params += root_filters(types, coll)
    noun = coll.type_name.replace("_", " ")
    return {
        coll.type_name: field(one, record_type | None, [("id", UUID, P.empty)], root=False,
                              description=f"A {noun} by id; null if it does not exist, was deleted, or is not yours"),
        coll.key: field(many, types.connections[coll.name], params, root=False,
                        description=f"{coll.title}, in {_order(coll)}, with the REST filters"),
    }


def _order(coll: Collection) -> str:
    return "their list order (as REST lists them)" if coll.order else "id order"


def root_filters(types: Types, coll: Collection) -> list[tuple[str, Any, Any]]:
    """The REST list filters of a collection, as root connection arguments."""
    from datetime import datetime

    def annotation(name: str) -> Any:
        if name == "status":
            return types.output(coll.out.model_fields["status"].annotation) | None
        return {"updated_since": datetime | None, "identifier": str | None, "external_id": str | None}.get(
            name, UUID | None)

    return [(name, annotation(name), None) for name in filter_names(coll)]


def node_field() -> Any:
    async def node(info: Any, **kwargs: Any) -> Any:
        ctx = _ctx(info)
        readable = [c for c in REGISTRY.values() if ctx.allows(c.resource, "r")]
        if not readable:
            raise forbidden(f"{ctx.who.context}/*.r")
        variables = info.variable_values
        plan = plan_node(ctx.doc(variables), ctx.root_nodes(info.operation, info.path.key, variables), readable,
                         kwargs["id"], ctx.allows, "resolvers")
        async with ctx.connection() as conn:
            return _loaded(await run(conn, ctx.who, plan))

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


async def _answer(info: Any, conn: Any, coll: Collection, out: dict[str, Any]) -> Any:
    """A write's answer: the record read back through the compiled read of the field's selection, in the write's
    transaction; the fields only a write's answer carries (a measurement's safety alert) from the service's."""
    ctx = _ctx(info)
    variables = info.variable_values
    plan = plan_one(ctx.doc(variables), ctx.root_nodes(info.operation, info.path.key, variables), coll, out["id"],
                    ctx.allows, "resolvers")
    record = _loaded(await run(conn, ctx.who, plan, uuids=True))
    if record is None:
        return out
    for spec in record_specs(coll.name).values():
        if spec.source == "none":
            record[spec.name] = out.get(spec.name)
    return record


def mutation_fields(types: Types, coll: Collection) -> dict[str, Any]:
    record_type = types.record_types[coll.name]
    noun = coll.type_name.replace("_", " ")

    async def create(info: Any, **kwargs: Any) -> Any:
        ctx = _ctx(info)
        ctx.require(coll.resource, "c")
        body = _validate(coll.create, kwargs["input"])
        async with ctx.unit_of_work() as conn:
            out = await service.create(conn, ctx.who, coll, body)
            return await _answer(info, conn, coll, out)

    async def update(info: Any, **kwargs: Any) -> Any:
        ctx = _ctx(info)
        ctx.require(coll.resource, "u")
        body = _validate(coll.patch, kwargs["input"])
        async with ctx.unit_of_work() as conn:
            out = await service.patch(conn, ctx.who, coll, kwargs["id"], body, _if_match(kwargs["expected_version"]))
            return await _answer(info, conn, coll, out)

    async def delete(info: Any, **kwargs: Any) -> Any:
        ctx = _ctx(info)
        ctx.require(coll.resource, "d")
        async with ctx.unit_of_work() as conn:
            await service.delete(conn, ctx.who, coll, kwargs["id"], _if_match(kwargs["expected_version"]))
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


__all__ = ["mutation_fields", "query_fields", "relations"]
