"""Abuse limits applied while validating a document, before any resolver runs: depth, aliases (fragments
included), tokens, and a cost where the list sizes (``first``) multiply through nesting."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import lru_cache, partial
from typing import Any

from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLNamedType,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
    VariableNode,
    get_named_type,
)
from strawberry.extensions import (
    MaskErrors,
    MaxAliasesLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)

from service.collections.repository import decode_cursor
from service.errors import ValidationFailed
from service.graphql.errors import ErrorCodes, should_mask

MAX_DEPTH = 12
MAX_ALIASES = 30
MAX_TOKENS = 5_000
MAX_COST = 50_000
DEFAULT_FIRST = 20  # nested connections
ROOT_FIRST = 50  # root connections, as REST's default limit
MAX_FIRST = 500  # as REST's maximum limit


def check_page(first: int, after: str | None = None) -> None:
    """A connection's page arguments: ``first`` within bounds and a cursor that decodes, else a 422 problem (a
    GraphQL error with its code). The resolvers check them; the SQL compiler leaves out a relation they refuse
    (shapes.py)."""
    if not 1 <= first <= MAX_FIRST:
        raise ValidationFailed.on("first", f"first must be between 1 and {MAX_FIRST}", "invalid_page_size")
    if after:
        decode_cursor(after)


class _OverBudget(Exception):
    pass


class _Cost:
    """Sum over connection fields of the product of the ``first`` of every enclosing connection."""

    def __init__(self, context: ValidationContext, variables: dict[str, Any], budget: int) -> None:
        self.context = context
        self.variables = variables
        self.budget = budget
        self.total = 0

    def first(self, node: FieldNode, default: Any) -> int:
        for arg in node.arguments or ():
            if arg.name.value != "first":
                continue
            value = arg.value
            if isinstance(value, VariableNode):
                found = self.variables.get(value.name.value)
                return max(int(found), 1) if isinstance(found, int) else MAX_FIRST
            if isinstance(value, IntValueNode):
                return max(int(value.value), 1)
            return MAX_FIRST
        return max(int(default), 1) if isinstance(default, int) else DEFAULT_FIRST

    def walk(self, parent: GraphQLNamedType | None, selections: SelectionSetNode, multiplier: int,
             fragments: frozenset[str]) -> None:
        schema = self.context.schema
        for sel in selections.selections:
            if isinstance(sel, FieldNode):
                fields = getattr(parent, "fields", None) or {}
                definition = fields.get(sel.name.value)
                if definition is None:
                    continue
                factor = multiplier
                if "first" in definition.args:
                    factor = multiplier * self.first(sel, definition.args["first"].default_value)
                    self.total += factor
                    if self.total > self.budget:
                        raise _OverBudget
                if sel.selection_set:
                    self.walk(get_named_type(definition.type), sel.selection_set, factor, fragments)
            elif isinstance(sel, InlineFragmentNode):
                target = schema.get_type(sel.type_condition.name.value) if sel.type_condition else parent
                self.walk(target, sel.selection_set, multiplier, fragments)
            elif isinstance(sel, FragmentSpreadNode):
                name = sel.name.value
                fragment = self.context.get_fragment(name)
                if fragment is None or name in fragments:
                    continue  # other rules report unknown or cyclic fragments
                target = schema.get_type(fragment.type_condition.name.value)
                self.walk(target, fragment.selection_set, multiplier, fragments | {name})


@lru_cache(maxsize=256)
def cost_rule(max_cost: int, int_variables: tuple[tuple[str, int], ...]) -> type[ValidationRule]:
    """One rule class per (limit, integer variables), so validation results stay cacheable per document."""
    variables = dict(int_variables)

    class CostRule(ValidationRule):
        def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
            schema = self.context.schema
            root = schema.mutation_type if node.operation == OperationType.MUTATION else schema.query_type
            cost = _Cost(self.context, variables, max_cost)
            try:
                cost.walk(root, node.selection_set, 1, frozenset())
            except _OverBudget:
                self.report_error(GraphQLError(
                    f"The query may return more than {max_cost} records (the 'first' of nested connections "
                    "multiply); ask for smaller pages", node,
                    extensions={"code": "QUERY_TOO_COSTLY", "reason": "cost_limit", "limit": max_cost},
                ))

    return CostRule


# Built once: Strawberry's limiters make a new rule class per instance, which would defeat the validation cache.
STATIC_RULES = (
    *QueryDepthLimiter(max_depth=MAX_DEPTH).validation_rules,
    *MaxAliasesLimiter(max_alias_count=MAX_ALIASES).validation_rules,
)


class Limits(SchemaExtension):
    """Tokens (while parsing), then depth, aliases (fragments included) and cost (variables included)
    while validating: all before execution."""

    def on_operation(self) -> Iterator[None]:
        ctx = self.execution_context
        ctx.parse_options["max_tokens"] = MAX_TOKENS
        ints = tuple(sorted((k, v) for k, v in (ctx.variables or {}).items()
                            if isinstance(v, int) and not isinstance(v, bool)))
        ctx.validation_rules = (*ctx.validation_rules, *STATIC_RULES, cost_rule(MAX_COST, ints))
        yield


def extensions() -> list[Callable[[], SchemaExtension]]:
    """Factories, so each request gets its own extension instances (the caches are module-level)."""
    return [
        ErrorCodes,  # first: its code after the yield runs last, once MaskErrors has masked
        Limits,
        partial(ParserCache, maxsize=256),
        partial(ValidationCache, maxsize=256),
        partial(MaskErrors, should_mask_error=should_mask),
    ]
