"""Reading a GraphQL document's selections as graphql-core's executor does: fragments flattened, ``@skip`` and
``@include`` applied, fields grouped by response key in the order they first appear, argument values read from
literals or (coerced) variables.

Used by the SQL compiler for every read, whichever way the request is answered (``compiled.py``): by the stock
executor, whose resolvers read the compiled values, or by the whole-response path. The document has been validated
before this runs, so names, types and argument shapes are those of the schema.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any
from uuid import UUID

from graphql import (
    BooleanValueNode,
    DocumentNode,
    EnumValueNode,
    FieldNode,
    FloatValueNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    IntValueNode,
    ListTypeNode,
    NamedTypeNode,
    NonNullTypeNode,
    NullValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    TypeNode,
    ValueNode,
    VariableNode,
)

ABSENT: Any = object()  # an argument not given (its default applies), or a variable not provided


class NotPlain(Exception):
    """A variable or literal this module does not coerce itself (only the whole-response path asks it to): the
    stock executor coerces it instead."""


@dataclass(frozen=True)
class Doc:
    """A document's fragments and the operation's variable values (coerced)."""

    fragments: dict[str, FragmentDefinitionNode]
    variables: dict[str, Any]

    @classmethod
    def of(cls, document: DocumentNode, variables: dict[str, Any]) -> Doc:
        fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        return cls(fragments, variables)

    # ------------------------------------------------------------ values

    def value(self, node: ValueNode | None, enum: type[Enum] | None = None) -> Any:
        """An argument's value: ``ABSENT`` when not given or given as a variable that was not provided."""
        if node is None:
            return ABSENT
        if isinstance(node, VariableNode):
            return self.variables.get(node.name.value, ABSENT)
        if isinstance(node, NullValueNode):
            return None
        if isinstance(node, IntValueNode):
            return int(node.value)
        if isinstance(node, FloatValueNode):
            return float(node.value)
        if isinstance(node, StringValueNode | BooleanValueNode):
            return node.value
        if isinstance(node, EnumValueNode):
            return enum[node.value] if enum is not None else node.value
        raise NotPlain(type(node).__name__)

    def included(self, node: Any) -> bool:
        for directive in node.directives or ():
            name = directive.name.value
            if name in ("skip", "include"):
                arg = next((a.value for a in directive.arguments or () if a.name.value == "if"), None)
                if self.value(arg) is (name == "skip"):
                    return False
        return True

    # ------------------------------------------------------------ fields

    def fields(self, selection_sets: Iterable[SelectionSetNode], applies: Any) -> Iterator[FieldNode]:
        """The fields of the selection sets in document order, fragments whose type condition ``applies`` flattened."""
        for selection_set in selection_sets:
            for sel in selection_set.selections:
                if not self.included(sel):
                    continue
                if isinstance(sel, FieldNode):
                    yield sel
                elif isinstance(sel, InlineFragmentNode):
                    if sel.type_condition is None or applies(sel.type_condition.name.value):
                        yield from self.fields([sel.selection_set], applies)
                elif isinstance(sel, FragmentSpreadNode):
                    fragment = self.fragments.get(sel.name.value)
                    if fragment is not None and applies(fragment.type_condition.name.value):
                        yield from self.fields([fragment.selection_set], applies)

    def grouped(self, selection_sets: Iterable[SelectionSetNode], applies: Any) -> dict[str, list[FieldNode]]:
        """Fields by response key (alias or name), in the order the keys first appear, as graphql-core groups them."""
        out: dict[str, list[FieldNode]] = {}
        for node in self.fields(selection_sets, applies):
            out.setdefault((node.alias or node.name).value, []).append(node)
        return out


def subselections(nodes: Iterable[FieldNode]) -> list[SelectionSetNode]:
    return [n.selection_set for n in nodes if n.selection_set is not None]


def argument(node: FieldNode, name: str) -> ValueNode | None:
    return next((a.value for a in node.arguments or () if a.name.value == name), None)


# ---------------------------------------------------------------- coercing raw variables (whole-response path)

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_INT_RANGE = range(-(2**31), 2**31)


def coerce_variables(operation: OperationDefinitionNode, raw: dict[str, Any] | None,
                     enums: dict[str, type[Enum]]) -> dict[str, Any]:
    """The operation's variables as graphql-core would coerce them, for the plain cases only: Int, Boolean, String,
    UUID and the schema's enums, given or defaulted to a literal. Anything else (a list, an input object, a
    DateTime, a float for an Int, a value graphql-core would refuse) raises ``NotPlain``: the stock executor, which
    coerces everything and reports what it refuses, answers that request. So a value accepted here is one the
    executor accepts too, with the same result."""
    raw = raw or {}
    out: dict[str, Any] = {}
    for definition in operation.variable_definitions or ():
        name = definition.variable.name.value
        type_name, non_null = _named(definition.type)
        if name in raw:
            value = raw[name]
        elif definition.default_value is not None:
            value = _literal(definition.default_value)
        else:
            if non_null:
                raise NotPlain(name)
            continue  # not provided: the argument's own default applies
        out[name] = _coerce(value, type_name, non_null, enums)
    return out


def _named(type_node: TypeNode) -> tuple[str, bool]:
    non_null = isinstance(type_node, NonNullTypeNode)
    inner = type_node.type if isinstance(type_node, NonNullTypeNode) else type_node
    if isinstance(inner, ListTypeNode) or not isinstance(inner, NamedTypeNode):
        raise NotPlain("list")
    return inner.name.value, non_null


def _literal(node: ValueNode) -> Any:
    if isinstance(node, NullValueNode):
        return None
    if isinstance(node, IntValueNode):
        return int(node.value)
    if isinstance(node, StringValueNode | BooleanValueNode | EnumValueNode):
        return node.value
    raise NotPlain(type(node).__name__)


def _coerce(value: Any, type_name: str, non_null: bool, enums: dict[str, type[Enum]]) -> Any:
    if value is None:
        if non_null:
            raise NotPlain("null")
        return None
    if type_name == "Int" and type(value) is int and value in _INT_RANGE:
        return value
    if type_name == "Boolean" and type(value) is bool:
        return value
    if type_name == "String" and type(value) is str:
        return value
    if type_name == "UUID" and type(value) is str and _UUID.match(value):
        return UUID(value)
    enum = enums.get(type_name)
    if enum is not None and type(value) is str and value in enum.__members__:
        return enum[value]
    raise NotPlain(type_name)
