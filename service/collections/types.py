"""Field types shared by every schema: strict, bounded, and safe to store in PostgreSQL."""

from __future__ import annotations

import os
import time
from datetime import date
from typing import Annotated, Any
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
)


def _storable(value: str) -> str:
    """PostgreSQL text cannot hold NUL, and a lone surrogate cannot be encoded as UTF-8."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode (no lone surrogates)") from exc
    return value


Text = Annotated[str, Strict(), StringConstraints(max_length=10_000), AfterValidator(_storable)]
RequiredText = Annotated[
    str, Strict(), StringConstraints(min_length=1, max_length=10_000), AfterValidator(_storable)
]
ShortText = Annotated[str, Strict(), StringConstraints(min_length=1, max_length=500), AfterValidator(_storable)]
Timestamp = Annotated[AwareDatetime, Field(description="RFC 3339 date-time with a time zone offset")]
Day = Annotated[date, Field(ge=date(1900, 1, 1), le=date(2200, 12, 31))]
Finite = Annotated[float, Strict(), Field(allow_inf_nan=False, ge=-1e12, le=1e12)]
SmallInt = Annotated[int, Strict(), Field(ge=-32768, le=32767)]
Rating = Annotated[int, Strict(), Field(ge=0, le=10)]
Flag = Annotated[bool, Strict()]


class Strict(BaseModel):
    """Request bodies: unknown fields rejected, no coercion of strings into numbers or booleans."""

    model_config = ConfigDict(extra="forbid")


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExternalIdIn(Strict):
    system: ShortText
    value: ShortText


ExternalIds = Annotated[list[ExternalIdIn], Field(max_length=20)]
UUIDs = Annotated[list[UUID], Field(max_length=50)]


def uuid7() -> UUID:
    """A time-ordered UUID (RFC 9562 version 7): new records sort after old ones."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return UUID(int=value)


def strict_uuid(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


def patch_model(create: type[BaseModel], name: str) -> type[BaseModel]:
    """The PATCH body of a collection: every field of its create body, none required.

    Omitted fields keep their value; an explicit null is accepted only where the field is nullable,
    because defaults are not validated but given values are.
    """
    from pydantic import create_model

    fields: dict[str, Any] = {}
    for field_name, info in create.model_fields.items():
        annotation = Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
        fields[field_name] = (annotation, Field(default=None, description=info.description))
    return create_model(name, __base__=Strict, **fields)  # type: ignore[call-overload,no-any-return]
