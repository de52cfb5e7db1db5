"""Building a collection's schemas from its create body, so each field is declared once."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, create_model

from service.collections.types import ExternalIdIn, Out, patch_model


class Identifier(Out):
    system: str
    value: str


def schemas(
    create: type[BaseModel], *, ext_field: str = "external_ids", extra_out: dict[str, Any] | None = None,
) -> tuple[type[BaseModel], type[BaseModel], type[BaseModel]]:
    """(create, patch, out) for a collection whose create body is ``create``.

    The output has every field of the create body (always present, null where unset) plus the record
    fields every collection shares.
    """
    base = create.__name__.removesuffix("In")
    fields: dict[str, Any] = {
        "id": (UUID, ...),
        "created_at": (datetime, ...),
        "updated_at": (datetime, ...),
        "version": (int, ...),
    }
    for name, info in create.model_fields.items():
        annotation = info.annotation
        if name == ext_field or annotation is not None and getattr(annotation, "__origin__", None) is list and \
                annotation.__args__ and annotation.__args__[0] is ExternalIdIn:
            annotation = list[Identifier]
        fields[name] = (annotation, ...)
    fields.update(extra_out or {})
    out = create_model(f"{base}", __base__=Out, **fields)
    patch = patch_model(create, f"{base}Patch")
    return create, patch, out
