"""Strawberry types generated from the collection registry: a collection added to REGISTRY gets its object
type, connection, relations and input types with no hand-written copy.

(No ``from __future__ import annotations``: Strawberry reads the real annotation objects built here.)
"""

import dataclasses
import enum
import types
import typing
from datetime import date, datetime
from typing import Annotated, Any
from uuid import UUID

import strawberry
from pydantic import AwareDatetime, BaseModel
from strawberry.types.unset import UNSET

from service.collections.registry import REGISTRY, Collection
from service.collections.types import list_of

SCALARS: dict[Any, Any] = {str: str, int: int, float: float, bool: bool, UUID: UUID, date: date, datetime: datetime,
                         AwareDatetime: datetime}
JSON = strawberry.scalars.JSON


@strawberry.type(description="Relay-style page information")
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.interface(description="Any record, by its REST UUID (as Relay's Node)")
class Node:
    id: UUID


def _strip(annotation: Any) -> Any:
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _optional_inner(annotation: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) != len(typing.get_args(annotation)):
            inner = args[0] if len(args) == 1 else typing.Union[tuple(args)]  # noqa: UP007
            return inner, True
    return annotation, False


class Types:
    """Builds and remembers every generated type (enums and nested models are shared)."""

    def __init__(self) -> None:
        self.enums: dict[type, Any] = {}
        self.objects: dict[type, Any] = {}  # pydantic model -> strawberry output type
        self.inputs: dict[type | tuple[type, str], Any] = {}  # pydantic model -> strawberry input type
        self.record_types: dict[str, Any] = {}  # collection name -> object type
        self.connections: dict[str, Any] = {}
        self.edges: dict[str, Any] = {}
        # shells first, so relations may reference any collection's type before it is decorated
        for coll in REGISTRY.values():
            name = coll.out.__name__
            self.record_types[coll.name] = types.new_class(name, (Node,))
            self.objects[coll.out] = self.record_types[coll.name]
            self.edges[coll.name] = types.new_class(f"{name}Edge")
            self.connections[coll.name] = types.new_class(f"{name}Connection")

    # ------------------------------------------------------------ annotations

    def enum(self, cls: type[enum.Enum]) -> Any:
        if cls not in self.enums:
            self.enums[cls] = strawberry.enum(cls)
        return self.enums[cls]

    def output(self, annotation: Any) -> Any:
        annotation = _strip(annotation)
        inner, optional = _optional_inner(annotation)
        if optional:
            return self.output(inner) | None
        if typing.get_origin(annotation) is list:
            return list_of(self.output(typing.get_args(annotation)[0]))
        if typing.get_origin(annotation) is dict or annotation is Any:
            return JSON
        if typing.get_origin(annotation) is typing.Literal:
            return str
        if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
            return self.enum(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return self.nested_object(annotation)
        return SCALARS[annotation]

    def input(self, annotation: Any) -> Any:
        annotation = _strip(annotation)
        inner, optional = _optional_inner(annotation)
        if optional:
            return self.input(inner) | None
        if typing.get_origin(annotation) is list:
            return list_of(self.input(typing.get_args(annotation)[0]))
        if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
            return self.enum(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return self.input_object(annotation)
        return SCALARS[annotation]

    # ------------------------------------------------------------ objects

    def nested_object(self, model: type[BaseModel]) -> Any:
        if model not in self.objects:
            cls = types.new_class(model.__name__)
            self.objects[model] = cls
            self.fill_fields(cls, model)
            strawberry.type(cls, description=model.__doc__)
        return self.objects[model]

    def fill_fields(self, cls: Any, model: type[BaseModel]) -> None:
        cls.__annotations__ = {}
        for name, info in model.model_fields.items():
            cls.__annotations__[name] = self.output(info.annotation)
            setattr(cls, name, strawberry.field(description=info.description))

    def input_object(self, model: type[BaseModel], name: str | None = None, *, all_optional: bool = False) -> Any:
        key = (model, name) if name else model
        if key not in self.inputs:
            cls = types.new_class(name or model.__name__.removesuffix("In") + "Input")
            self.inputs[key] = cls
            cls.__annotations__ = {}
            for field_name, info in model.model_fields.items():
                annotation = self.input(info.annotation)
                if all_optional or not info.is_required():
                    _, optional = _optional_inner(annotation)
                    annotation = annotation if optional else annotation | None
                    setattr(cls, field_name, strawberry.field(default=UNSET, description=info.description))
                else:
                    setattr(cls, field_name, strawberry.field(description=info.description))
                cls.__annotations__[field_name] = annotation
            strawberry.input(cls, description=model.__doc__)
        return self.inputs[key]

    def create_input(self, coll: Collection) -> Any:
        return self.input_object(coll.create, f"{coll.out.__name__}CreateInput")

    def patch_input(self, coll: Collection) -> Any:
        return self.input_object(coll.patch, f"{coll.out.__name__}PatchInput", all_optional=True)


def plain(value: Any) -> Any:
    """A Strawberry input value as the plain data a pydantic model validates (UNSET fields omitted)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if getattr(value, f.name) is not UNSET}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
