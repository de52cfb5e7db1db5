"""graphql-core's executor with shortcuts for the fields a page of records is made of.

A dashboard executes a few thousand fields: leaves such as ``label`` or ``status`` and the ``edges`` and ``node``
of connections, which Strawberry resolves by ``getattr`` (a "basic" field: no resolver, arguments nor
extensions), and relation fields whose value was prefetched. For each, graphql-core builds a path and a
resolve info (which Strawberry wraps in its own Info), calls the resolver through Strawberry's wrappers and
completes the value through its chain of non-null, list, leaf and object checks.

Here ``execute_fields`` takes the same steps as graphql-core's ``execute_field`` with two shortcuts:

- **resolve**: a basic field is read with ``getattr`` (what Strawberry's default resolver does) without a
  resolve info; a resolver declared ``resolves_directly`` (``resolve_directly`` below) is called as
  graphql-core would call it;
- **complete**: a value whose completion is plain is completed in line: a scalar or enum the type coerces to a
  non-null value, null for a nullable type, an object whose type check needs no resolve info, a list of such
  objects. Those checks are made before anything below the field runs. Any other value (null for a non-null
  type, a value the scalar refuses, an awaitable, a deferred or streamed selection, ...) is completed by
  graphql-core's own ``complete_value`` with a real resolve info, as before.

Errors are handled at the same points and with the same calls as graphql-core (``handle_field_error`` for the
field, then for each list item), so their messages, paths and the nulling of parents do not change.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import GeneratorType
from typing import Any

from graphql import (
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    Undefined,
    get_argument_values,
    is_leaf_type,
)
from graphql.pyutils import Path, gather_with_cancel
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

_SLOW = object()  # not taken by a shortcut: graphql-core's way
_BASIC = 1  # read with getattr(source, python_name)
_DIRECT = 2  # field_def.resolve(source, info, **args), args as graphql-core computes them


def _plan(field_def: GraphQLField) -> Any:
    """(how to resolve, Python attribute) for a field a shortcut takes, else ``_SLOW``."""
    resolve = field_def.resolve
    definition = (field_def.extensions or {}).get("strawberry-definition")
    if resolve is None or definition is None or definition.extensions:
        return _SLOW
    if getattr(resolve, "_is_default", False) and definition.base_resolver is None and not field_def.args:
        return_type = field_def.type
        nullable = not isinstance(return_type, GraphQLNonNull)
        named = return_type if nullable else return_type.of_type
        return (_BASIC, definition.python_name, named if is_leaf_type(named) else None, nullable)
    if getattr(resolve, "resolves_directly", False):
        return (_DIRECT, None, None, False)
    return _SLOW


_plans: dict[tuple[GraphQLObjectType, str], Any] = {}  # (type, field name) -> plan; one schema per process

# Readers equivalent to ``getattr(obj, name)`` for the classes records are made of (context.Obj registers one).
READERS: dict[type, Callable[[Any, str], Any]] = {}

# Values that are never awaitable: checked by type before asking the (slower) general predicate.
_PLAIN = frozenset({str, int, float, bool, type(None), dict, list})
_NEVER_AWAITABLE: set[type] = set(_PLAIN)  # grows with the classes of resolved values (records, edges, pages)


def _never_awaitable(value: Any) -> bool:
    """True for values of a class without ``__await__`` (special methods are looked up on the class) other than
    generators (a generator-based coroutine is awaitable); the answer is remembered per class."""
    cls = type(value)
    if cls in _NEVER_AWAITABLE:
        return True
    if hasattr(cls, "__await__") or isinstance(value, GeneratorType):
        return False
    _NEVER_AWAITABLE.add(cls)
    return True


def _info_free(object_type: GraphQLObjectType) -> bool:
    """An object type whose ``is_type_of`` (if any) does not read the resolve info."""
    check = object_type.is_type_of
    return check is None or getattr(check, "ignores_info", False)


class ExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's execution context, with the shortcuts above."""

    def execute_fields(self, parent_type: GraphQLObjectType, source_value: Any, path: Path | None,
                       grouped_field_set: Any, position_context: Any) -> Any:
        """graphql-core's ``execute_fields`` (the same steps, in the same order), fields through ``_field``."""
        manager = self.middleware_manager
        if position_context is not None or (manager is not None and manager.middlewares):
            # deferred fragments, or an extension's resolve hook that must see every field: graphql-core's way
            return super().execute_fields(parent_type, source_value, path, grouped_field_set, position_context)
        results: dict[str, Any] = {}
        is_awaitable = self.is_awaitable
        awaitable_fields: list[str] = []
        try:
            for response_name, field_details_list in grouped_field_set.items():
                result = self._field(parent_type, source_value, field_details_list, path, response_name)
                if result is Undefined:
                    continue
                results[response_name] = result
                if not _never_awaitable(result) and is_awaitable(result):
                    awaitable_fields.append(response_name)
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

    def _field(self, parent_type: GraphQLObjectType, source: Any, field_details_list: Any, path: Path | None,
               response_name: str) -> Any:
        """graphql-core's ``execute_field`` with the shortcuts."""
        field_name = field_details_list[0].node.name.value
        key = (parent_type, field_name)
        plan = _plans.get(key)
        if plan is None:
            field_def = self.schema.get_field(parent_type, field_name)
            plan = _plans[key] = _SLOW if field_def is None else _plan(field_def)
        if plan is not _SLOW and plan[2] is not None:  # a leaf read off the object: most fields
            leaf = self._leaf(source, plan)
            if leaf is not _SLOW:
                return leaf
        field_path = Path(path, response_name, parent_type.name)
        if plan is _SLOW:
            return self.execute_field(parent_type, source, field_details_list, field_path, None)
        field_def = parent_type.fields[field_name]
        return_type = field_def.type
        info = None
        try:
            if plan[0] == _BASIC:
                reader = READERS.get(type(source))
                result = getattr(source, plan[1]) if reader is None else reader(source, plan[1])
            else:
                info = self.build_resolve_info(field_def, [d.node for d in field_details_list], parent_type,
                                               field_path)
                result = field_def.resolve(source, info, **self._arguments(field_def, field_details_list))
            if not _never_awaitable(result) and self.is_awaitable(result):
                info = info or self.build_resolve_info(field_def, [d.node for d in field_details_list],
                                                       parent_type, field_path)
                return self.complete_awaitable_value(return_type, field_details_list, info, field_path, result,
                                                     None)
            completed = self._complete(return_type, field_details_list, field_path, result)
            if completed is _SLOW:
                info = info or self.build_resolve_info(field_def, [d.node for d in field_details_list],
                                                       parent_type, field_path)
                completed = self.complete_value(return_type, field_details_list, info, field_path, result, None)
            if not _never_awaitable(completed) and self.is_awaitable(completed):
                return self._settled(completed, return_type, field_details_list, field_path)
        except Exception as raw_error:  # noqa: BLE001 - as graphql-core: the error is the field's
            self.handle_field_error(raw_error, return_type, field_details_list, field_path)
            return None
        return completed

    @staticmethod
    def _leaf(source: Any, plan: Any) -> Any:
        """A leaf field's completed value, or ``_SLOW`` for the general path (which reads the attribute again:
        reading has no side effects) to complete or report."""
        _, attr, leaf, nullable = plan
        reader = READERS.get(type(source))
        try:
            value = getattr(source, attr) if reader is None else reader(source, attr)
            if value is None:
                return None if nullable else _SLOW
            coerced = leaf.coerce_output_value(value)
        except Exception:  # noqa: BLE001 - the general path raises it again, located
            return _SLOW
        return _SLOW if coerced is None or coerced is Undefined else coerced

    def _arguments(self, field_def: GraphQLField, field_details_list: Any) -> dict[str, Any]:
        """The field's arguments, as graphql-core computes them (the same for every record of a list)."""
        cache = self.__dict__.setdefault("_argument_cache", {})
        key = id(field_details_list)
        hit = cache.get(key)
        if hit is not None and hit[0] is field_details_list:
            return hit[1]  # type: ignore[no-any-return]
        first = field_details_list[0]
        args = get_argument_values(field_def, first.node, self.variable_values, first.fragment_variable_values,
                                   self.hide_suggestions) if field_def.args or first.node.arguments else {}
        cache[key] = (field_details_list, args)  # the list kept alive, so its id is not reused
        return args

    async def _settled(self, completed: Awaitable[Any], return_type: GraphQLOutputType, field_details_list: Any,
                       path: Path) -> Any:
        try:
            return await completed
        except Exception as raw_error:  # noqa: BLE001 - as graphql-core
            self.handle_field_error(raw_error, return_type, field_details_list, path)
            return None

    # ------------------------------------------------------------ completion

    def _complete(self, return_type: Any, field_details_list: Any, path: Path, result: Any) -> Any:
        """The completed value, or ``_SLOW`` (decided before anything below the field runs)."""
        if isinstance(return_type, GraphQLNonNull):
            if result is None:
                return _SLOW
            return_type = return_type.of_type
        elif result is None:
            return None
        if is_leaf_type(return_type):
            try:
                coerced = return_type.coerce_output_value(result)
            except Exception:  # noqa: BLE001 - graphql-core coerces again and reports it
                return _SLOW
            return _SLOW if coerced is None or coerced is Undefined else coerced
        if isinstance(return_type, GraphQLObjectType):
            grouped = self._subfields(return_type, field_details_list, result)
            if grouped is _SLOW:
                return _SLOW
            return self.execute_fields(return_type, result, path, grouped, None)
        if isinstance(return_type, GraphQLList) and isinstance(result, list):
            return self._complete_list(return_type.of_type, field_details_list, path, result)
        return _SLOW

    def _subfields(self, object_type: GraphQLObjectType, field_details_list: Any, result: Any) -> Any:
        if not _info_free(object_type) or (not _never_awaitable(result) and self.is_awaitable(result)):
            return _SLOW
        if object_type.is_type_of is not None and not object_type.is_type_of(result, None):
            return _SLOW  # graphql-core reports the wrong type
        grouped, new_defer_usages, _ = self.collect_subfields(object_type, field_details_list)
        return _SLOW if new_defer_usages else grouped

    def _complete_list(self, item_type: Any, field_details_list: Any, path: Path, items: list[Any]) -> Any:
        """A list of objects (as graphql-core's ``complete_iterable_value`` without @stream)."""
        non_null = isinstance(item_type, GraphQLNonNull)
        object_type = item_type.of_type if non_null else item_type
        if not isinstance(object_type, GraphQLObjectType) or any(f.node.directives for f in field_details_list):
            return _SLOW  # lists of leaves, and @stream, are graphql-core's
        grouped = None
        for item in items:
            if item is None:
                if non_null:
                    return _SLOW
                continue
            grouped = self._subfields(object_type, field_details_list, item)
            if grouped is _SLOW:
                return _SLOW
        completed: list[Any] = []
        awaitable_indices: list[int] = []
        is_awaitable = self.is_awaitable
        try:
            for index, item in enumerate(items):
                if item is None:
                    completed.append(None)
                    continue
                item_path = path.add_key(index, None)
                try:
                    value = self.execute_fields(object_type, item, item_path, grouped, None)
                except Exception as raw_error:  # noqa: BLE001 - as graphql-core's complete_list_item_value
                    self.handle_field_error(raw_error, item_type, field_details_list, item_path)
                    value = None
                else:
                    if type(value) is not dict and is_awaitable(value):
                        value = self._settled(value, item_type, field_details_list, item_path)
                        awaitable_indices.append(index)
                completed.append(value)
        except Exception:
            if awaitable_indices:
                self.settle_in_background([completed[i] for i in awaitable_indices])
            raise
        if not awaitable_indices:
            return completed

        async def get_completed() -> list[Any]:
            awaited = await gather_with_cancel(*(completed[i] for i in awaitable_indices))
            for i, value in zip(awaitable_indices, awaited, strict=True):
                completed[i] = value
            return completed

        return get_completed()


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
