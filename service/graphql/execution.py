"""graphql-core's executor with a shortcut for the commonest field: a scalar or enum read off the record.

A dashboard resolves several thousand fields, most of them leaves such as ``label`` or ``status`` that
Strawberry resolves by ``getattr`` (a "basic" field: no resolver, no arguments, no extensions). For each,
graphql-core builds a path, a resolve info (which Strawberry wraps again), calls the resolver through two
wrappers and completes the value through the non-null, list, leaf and object checks. Here such a field is
read and coerced directly, and everything else goes the regular way.

The shortcut only takes values it can complete exactly as graphql-core would: a value the leaf type coerces
to a non-null result, or null for a nullable field. Anything else (a missing attribute, null for a non-null
field, a value the scalar refuses) is resolved again by the regular path, which reports the error with its
path and location as before; reading an attribute has no side effects, so reading it twice changes nothing.
"""

from __future__ import annotations

from typing import Any

from graphql import GraphQLField, GraphQLLeafType, GraphQLNonNull, GraphQLObjectType, Undefined, is_leaf_type
from graphql.pyutils import Path, gather_with_cancel
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

_SLOW = object()  # a field the shortcut leaves to graphql-core
_Plan = tuple[str, GraphQLLeafType, bool]  # Python attribute, leaf type, nullable


def _plan(field_def: GraphQLField) -> Any:
    resolve = field_def.resolve
    if resolve is None or not getattr(resolve, "_is_default", False) or field_def.args:
        return _SLOW
    definition = (field_def.extensions or {}).get("strawberry-definition")
    if definition is None or definition.base_resolver is not None or definition.extensions:
        return _SLOW
    return_type = field_def.type
    nullable = not isinstance(return_type, GraphQLNonNull)
    leaf = return_type if nullable else return_type.of_type
    if not is_leaf_type(leaf):
        return _SLOW
    return (definition.python_name, leaf, nullable)


_plans: dict[tuple[GraphQLObjectType, str], Any] = {}  # (type, field name) -> _Plan or _SLOW; per schema, bounded


class ExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's execution context, with plain scalar and enum fields of objects completed in line."""

    def execute_fields(self, parent_type: GraphQLObjectType, source_value: Any, path: Path | None,
                       grouped_field_set: Any, position_context: Any) -> Any:
        """graphql-core's ``execute_fields`` (the same steps, in the same order), with the shortcut first."""
        manager = self.middleware_manager
        if manager is not None and manager.middlewares:  # an extension's resolve hook sees every field
            return super().execute_fields(parent_type, source_value, path, grouped_field_set, position_context)
        results: dict[str, Any] = {}
        is_awaitable = self.is_awaitable
        awaitable_fields: list[str] = []
        try:
            for response_name, field_details_list in grouped_field_set.items():
                result = self._leaf(parent_type, source_value, field_details_list[0].node.name.value)
                if result is _SLOW:
                    result = self.execute_field(parent_type, source_value, field_details_list,
                                                Path(path, response_name, parent_type.name), position_context)
                    if result is Undefined:
                        continue
                    if is_awaitable(result):
                        awaitable_fields.append(response_name)
                results[response_name] = result
        except Exception:
            if awaitable_fields:  # settle what other fields started: they may fail too
                self.settle_in_background([results[name] for name in awaitable_fields])
            raise
        if not awaitable_fields:
            return results

        async def get_results() -> dict[str, Any]:
            if len(awaitable_fields) == 1:
                name = awaitable_fields[0]
                results[name] = await results[name]
            else:
                awaited = await gather_with_cancel(*(results[name] for name in awaitable_fields))
                results.update(zip(awaitable_fields, awaited, strict=True))
            return results

        return get_results()

    def _leaf(self, parent_type: GraphQLObjectType, source: Any, field_name: str) -> Any:
        """The completed value of a plain leaf field, or ``_SLOW``."""
        key = (parent_type, field_name)
        plan = _plans.get(key)
        if plan is None:
            field_def = self.schema.get_field(parent_type, field_name)
            plan = _plans[key] = _SLOW if field_def is None else _plan(field_def)
        if plan is _SLOW:
            return _SLOW
        attr, leaf, nullable = plan
        try:
            value = getattr(source, attr)
            if value is None:
                return None if nullable else _SLOW
            coerced = leaf.coerce_output_value(value)
        except Exception:  # noqa: BLE001 - the regular path raises it again, located
            return _SLOW
        return _SLOW if coerced is None or coerced is Undefined else coerced


def resolve_directly(schema: Any) -> None:
    """Let graphql-core call the resolvers that declare ``resolves_directly`` (fields.field) itself.

    Strawberry calls a resolver through its own wrapper, which per call builds an Info object and converts the
    arguments (GraphQL names to Python names, input objects to their classes). For a resolver that reads only
    ``info.context`` and whose arguments are scalars named alike, that changes nothing but the cost: graphql-core
    passes its own resolve info (whose ``context`` is the same object) and the same argument values. A field with
    Strawberry field extensions keeps Strawberry's wrapper (they must run).
    """
    for named in schema._schema.type_map.values():
        if not isinstance(named, GraphQLObjectType):
            continue
        for field_def in named.fields.values():
            definition = (field_def.extensions or {}).get("strawberry-definition")
            resolver = getattr(definition, "base_resolver", None)
            if resolver is not None and not definition.extensions and \
                    getattr(resolver.wrapped_func, "resolves_directly", False):
                field_def.resolve = resolver.wrapped_func
