"""Every query operation in one unit of work, and answered whole from its compiled statements when it can be.

``CompiledReads`` is a Strawberry schema extension (its documented ``on_execute`` hook, which may set the result in
place of execution). For a query it opens the query's unit of work: one transaction, the tenant set, the audit row
written before COMMIT. Then either

- **whole response** (setting ``GRAPHQL_COMPILED_RESPONSES``, on by default): every root field of the operation is
  a collection read (by id, a page, ``node``) or ``__typename``, its arguments and variables are plain ones this
  module coerces exactly as graphql-core does (``selection.coerce_variables``), the token may read everything the
  selection names and every page argument is valid, and no field has a resolver of its own. Then each root field's
  statement writes that field's JSON, keys in response order (``shapes`` "response" mode), and the response is
  those texts joined (``orjson.Fragment``): no Python object per record or field;
- otherwise the **stock executor** runs the operation: the root fields' resolvers run the same statements
  ("resolvers" mode) and every other resolver reads their values, raising each error where it belongs.

Both answers are the same document: ``tests/graphql/test_graphql_differential.py`` replays its corpus both ways and
holds both to the answers the previous implementation gave.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import Enum
from functools import cache
from typing import Any
from uuid import UUID

import orjson
import structlog
from graphql import ExecutionResult, FieldNode, GraphQLError, OperationDefinitionNode, get_operation_ast
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from service.api.uow import read_in_one
from service.audit import service as audit
from service.collections.registry import REGISTRY, Collection
from service.errors import DomainError
from service.graphql.context import GraphQLContext
from service.graphql.errors import camel
from service.graphql.limits import ROOT_FIRST
from service.graphql.reads import Plan, filter_names, plan_node, plan_one, plan_page, run, run_audited
from service.graphql.selection import ABSENT, Doc, NotPlain, argument, coerce_variables
from service.graphql.specs import record_specs, unwrap

log = structlog.get_logger("service.graphql")


@dataclass(frozen=True)
class Root:
    kind: str  # "one", "page", "node"
    coll: Collection | None


@cache
def _roots() -> dict[str, Root]:
    out = {"node": Root("node", None)}
    for coll in REGISTRY.values():
        out[camel(coll.type_name)] = Root("one", coll)
        out[camel(coll.key)] = Root("page", coll)
    return out


@cache
def _enums() -> dict[str, type[Enum]]:
    """The schema's enum types by GraphQL name (Strawberry names them after their class)."""
    out: dict[str, type[Enum]] = {}
    for coll in REGISTRY.values():
        for spec in record_specs(coll.name).values():
            if isinstance(spec.base, type) and issubclass(spec.base, Enum):
                out[spec.base.__name__] = spec.base
    return out


class CompiledReads(SchemaExtension):
    async def on_execute(self) -> AsyncIterator[None]:
        ec = self.execution_context
        ctx: GraphQLContext = ec.context
        ctx.document = ec.graphql_document
        if ec.operation_type is not OperationType.QUERY:
            yield
            return
        planned = _whole(ec, ctx) if ctx.compiled_responses else None
        data = None if planned is None else await _answer(ctx, planned)
        if data is not None:
            ec.result = ExecutionResult(data=data)
            yield
            return
        async with ctx.open_query():
            yield


async def _answer(ctx: GraphQLContext, planned: list[tuple[str, Plan | str]]) -> dict[str, Any] | None:
    """The response's data, each field's JSON as PostgreSQL wrote it; None if anything failed, so that the executor
    answers (and reports the failure where graphql-core reports it, masked).

    An operation of one statement (one root field: the dashboard's shape) has that statement write the request's
    audit rows in the same transaction (``reads.run_audited``): the ids it read never leave PostgreSQL, and the rows
    commit with the read or not at all (``driver_unit_of_work`` answers nothing if they did not); for a token known
    not to be revoked it needs no transaction, and runs alone on a pinned connection (``uow.pinned_read``). Several
    statements note what they read in the trail, whose rows the group commit writes, one per resource type for the
    request."""
    if all(isinstance(item, str) for _, item in planned):
        return dict(planned)  # nothing to read (``{ __typename }``)
    trail = audit.current()
    own_rows = trail is not None and sum(not isinstance(item, str) for _, item in planned) == 1

    async def read(conn: Any) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for key, item in planned:
            if isinstance(item, str):
                data[key] = item
                continue
            if own_rows:
                assert trail is not None
                body = await run_audited(conn, ctx.who, item, trail)
            else:
                body = await run(conn, ctx.who, item)
            data[key] = None if body is None else orjson.Fragment(body)
        return data

    # One statement writing its own rows needs no transaction: on a pinned connection, one round trip in all.
    try:
        return await read_in_one(ctx.engine, ctx.pinned if own_rows else None, ctx.who, ctx.revocations, read)
    except Exception:  # noqa: BLE001 - the stock executor runs the same statements and reports what fails
        log.info("whole_response_declined", exc_info=True)
        return None


_PLANS: OrderedDict[tuple[Any, ...], tuple[list[tuple[str, str]], list[tuple[str, Plan | str]] | None]] = \
    OrderedDict()
MAX_PLANS = 256


def _whole(ec: Any, ctx: GraphQLContext) -> list[tuple[str, Plan | str]] | None:
    """Each root field's plan (or ``__typename``'s value), or None when the stock executor must answer.

    Plans depend on the document, the operation, the variables and what the token may read (and whether it is a
    patient's), never on the organization or the data: they are kept per those (the 256 most recent), and a request
    that finds one checks its root fields' scopes again, as the resolvers would."""
    key = (ec.query, ec.operation_name, orjson.dumps(ec.variables, option=orjson.OPT_SORT_KEYS),
           tuple(ctx.who.scopes), ctx.who.patient_id is not None)
    hit = _PLANS.get(key)
    if hit is not None:
        _PLANS.move_to_end(key)
        checks, planned = hit
        return planned if all(_may(ctx, *check) for check in checks) else None
    checked: list[tuple[str, str]] = []
    planned = _planned(ec, ctx, checked)
    _PLANS[key] = (checked, planned)
    if len(_PLANS) > MAX_PLANS:
        _PLANS.popitem(last=False)
    return planned


def clear_plans() -> None:
    """Forget the kept plans (when what the registry declares changes: tests)."""
    _PLANS.clear()


def _planned(ec: Any, ctx: GraphQLContext, checked: list[tuple[str, str]]) -> list[tuple[str, Plan | str]] | None:
    if ec.graphql_document is None:
        return None
    operation = get_operation_ast(ec.graphql_document, ec.operation_name)
    if not isinstance(operation, OperationDefinitionNode):
        return None
    try:
        doc = Doc.of(ec.graphql_document, coerce_variables(operation, ec.variables, _enums()))
        planned: list[tuple[str, Plan | str]] = []
        for key, nodes in doc.grouped([operation.selection_set], lambda cond: cond == "Query").items():
            item = _plan(doc, nodes, ctx, checked)
            if item is None:
                return None
            planned.append((key, item))
    except (NotPlain, DomainError):
        return None  # the executor reports it (or coerces what this module does not)
    except Exception:  # noqa: BLE001 - a planning bug must not cost the request: the executor answers it
        log.warning("whole_response_planning_failed", exc_info=True)
        return None
    return planned


def _plan(doc: Doc, nodes: list[FieldNode], ctx: GraphQLContext, checked: list[tuple[str, str]]) -> Plan | str | None:
    name = nodes[0].name.value
    if name == "__typename":
        return "Query"
    root = _roots().get(name)
    if root is None:
        return None  # a field with a resolver of its own (progressSummary), or introspection
    node = nodes[0]
    if root.coll is None:
        readable = [c for c in REGISTRY.values() if ctx.allows(c.resource, "r")]
        record_id = doc.value(argument(node, "id"))
        if not readable or record_id is ABSENT:
            return None
        plan = plan_node(doc, nodes, readable, _uuid(record_id), ctx.allows, "response")
    elif root.kind == "one":
        checked.append((root.coll.resource, "r"))
        if not _may(ctx, root.coll.resource, "r"):
            return None
        plan = plan_one(doc, nodes, root.coll, _uuid(doc.value(argument(node, "id"))), ctx.allows, "response")
    else:
        checked.append((root.coll.resource, "s"))
        if not _may(ctx, root.coll.resource, "s"):
            return None
        plan = _page(doc, nodes, root.coll, ctx)
    return plan if plan.complete else None


def _may(ctx: GraphQLContext, resource: str, perm: str) -> bool:
    """The root field's scope, checked as its resolver checks it (a refusal is the executor's to report)."""
    try:
        ctx.require(resource, perm)
    except GraphQLError:
        return False
    return True


def _page(doc: Doc, nodes: list[FieldNode], coll: Collection, ctx: GraphQLContext) -> Plan:
    node = nodes[0]
    first = doc.value(argument(node, "first"))
    after = doc.value(argument(node, "after"))
    filters: dict[str, Any] = {}
    for name in filter_names(coll):
        if name == "updated_since" and argument(node, camel(name)) is not None:
            raise NotPlain("DateTime")
        value = doc.value(argument(node, camel(name)), _filter_enum(coll, name))
        if value is not ABSENT:
            filters[name] = _uuid(value) if name in ("client_id", *coll.filters) and value is not None else value
    if first is None or (after is not ABSENT and after is not None and not isinstance(after, str)):
        raise NotPlain("page")
    return plan_page(doc, nodes, coll, ROOT_FIRST if first is ABSENT else first,
                     None if after is ABSENT else after, filters, ctx.allows, "response")


def _filter_enum(coll: Collection, name: str) -> type[Enum] | None:
    if name != "status":
        return None
    status: type[Enum] = unwrap(coll.out.model_fields["status"].annotation)[0]
    return status


def _uuid(value: Any) -> Any:
    if isinstance(value, UUID):
        return value
    if isinstance(value, str):
        return UUID(value)
    raise NotPlain("UUID")
