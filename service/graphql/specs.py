"""What each field of a record type (or of a nested object type) is, derived from the collection's output model:
a value read from the row (a column, the identifiers column, a declared SQL form of what ``to_out`` derives, a
declared computed column), a nested object or list of them (JSON columns), or an output-only field with no column
(null when read). Relations are in ``relations.py``; anything else a type has (``Client.progress``) has its own
resolver and is not compiled."""

from __future__ import annotations

import enum
import types
import typing
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel

from service.collections.registry import REGISTRY, Collection
from service.graphql.errors import camel

Source = Literal["column", "ext", "sql", "computed", "json", "none"]


@dataclass(frozen=True)
class Spec:
    name: str  # the Python (output model) name
    base: Any  # the innermost type: str, int, float, bool, UUID, date, datetime, an Enum, a BaseModel
    many: bool  # a list of ``base``
    source: Source  # where the value comes from ("json": a key of the enclosing JSON object)
    nested: bool  # ``base`` is a nested (non-record) model: an object type of its own

    def renamed_enum(self) -> dict[str, str]:
        """For an enum whose GraphQL names differ from its stored values: value -> name."""
        if isinstance(self.base, type) and issubclass(self.base, enum.Enum):
            return {str(m.value): m.name for m in self.base if m.name != m.value}
        return {}


def unwrap(annotation: Any) -> tuple[Any, bool]:
    """(innermost type, is a list) of an output annotation: Annotated, Optional and list[...] removed."""
    many = False
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
        elif origin is list:
            many, annotation = True, typing.get_args(annotation)[0]
        else:
            return annotation, many


def _record_models() -> set[type]:
    return {c.out for c in REGISTRY.values()}


def _source(coll: Collection, name: str) -> Source:
    if name in coll.out_sql:
        return "sql"
    if name in coll.computed:
        return "computed"
    if name == coll.ext_field and "external_ids" in coll.table.c:
        return "ext"
    return "column" if name in coll.table.c else "none"


@cache
def record_specs(coll_name: str) -> dict[str, Spec]:
    """A record type's fields by GraphQL name."""
    coll = REGISTRY[coll_name]
    records = _record_models()
    out = {}
    for name, info in coll.out.model_fields.items():
        base, many = unwrap(info.annotation)
        nested = isinstance(base, type) and issubclass(base, BaseModel) and base not in records
        source = _source(coll, name)
        if isinstance(base, type) and base in records:
            source = "none"  # a record carried by a write's answer only (a measurement's safety alert)
        out[camel(name)] = Spec(name, base, many, source, nested)
    return out


@cache
def nested_specs(model: type[BaseModel]) -> dict[str, Spec]:
    """A nested object type's fields by GraphQL name (read from the keys of its JSON object)."""
    out = {}
    for name, info in model.model_fields.items():
        base, many = unwrap(info.annotation)
        nested = isinstance(base, type) and issubclass(base, BaseModel)
        out[camel(name)] = Spec(name, base, many, "json", nested)
    return out


def type_name(coll: Collection) -> str:
    return coll.out.__name__
