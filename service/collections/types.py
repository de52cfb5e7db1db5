"""Field types shared by every schema: strict, bounded, and safe to store in PostgreSQL."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from datetime import date
from types import GenericAlias
from typing import Annotated, Any
from uuid import UUID, SafeUUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    StringConstraints,
    WithJsonSchema,
)
from pydantic import Strict as NoCoercion  # the name Strict is this module's request-body base class
from pydantic.json_schema import JsonSchemaValue


def unstorable(value: str) -> str | None:
    """Why PostgreSQL text cannot hold ``value`` (NUL; a lone surrogate, which UTF-8 cannot encode), or None."""
    if "\x00" in value:
        return "must not contain NUL characters"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "must be valid Unicode (no lone surrogates)"
    return None


def storable(*texts: str) -> bool:
    return all(unstorable(t) is None for t in texts)


def _storable(value: str) -> str:
    if (why := unstorable(value)) is not None:
        raise ValueError(why)
    return value


@dataclass(frozen=True)
class Declared:
    """Adds JSON Schema keywords to a type's schema: what a validator of this module checks, declared in
    OpenAPI so that clients (and fuzzers) know it."""

    keywords: tuple[tuple[str, Any], ...]

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema.update(dict(self.keywords))
        return schema


def declared(**keywords: Any) -> Declared:
    return Declared(tuple(keywords.items()))


NO_NUL = declared(pattern=r"^[^\x00]*$")

Text = Annotated[str, NoCoercion(), StringConstraints(max_length=10_000), AfterValidator(_storable), NO_NUL]
QueryText = Annotated[str, AfterValidator(_storable), NO_NUL]  # a query parameter compared with stored text
RequiredText = Annotated[
    str, NoCoercion(), StringConstraints(min_length=1, max_length=10_000), AfterValidator(_storable), NO_NUL
]
ShortText = Annotated[
    str, NoCoercion(), StringConstraints(min_length=1, max_length=500), AfterValidator(_storable), NO_NUL
]


def _rfc3339_only(value: Any) -> Any:
    """Dates and times arrive as RFC 3339 strings only (pydantic would read a number as Unix time)."""
    if isinstance(value, (int, float)) or isinstance(value, str) and not _RFC3339_START.match(value):
        raise ValueError("must be an RFC 3339 string (YYYY-MM-DD...)")
    return value


_RFC3339_START = re.compile(r"^\d{4}-\d{2}-\d{2}")

def _year_bounds(value: Any) -> Any:
    if not 1900 <= value.year <= 2200:
        raise ValueError("must be in the years 1900 to 2200")
    return value


YEARS = declared(pattern=r"^(19[0-9][0-9]|2[01][0-9][0-9]|2200)-")
# Years 1900 to 2200 (as written, before any offset): bounds declared as a pattern, since JSON Schema
# bounds only numbers; beyond them PostgreSQL and Python disagree on what a time can be.
Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339_only), AfterValidator(_year_bounds), YEARS,
                      Field(description="RFC 3339 date-time with a time zone offset")]
Day = Annotated[date, BeforeValidator(_rfc3339_only), AfterValidator(_year_bounds), YEARS]


_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _date_or_timestamp(value: Any) -> Any:
    """A date stands for 00:00 UTC of that day; anything else must be an RFC 3339 timestamp."""
    value = _rfc3339_only(value)
    return f"{value}T00:00:00Z" if isinstance(value, str) and _DATE_ONLY.match(value) else value


# Every time-valued ``since``/``until``-style query parameter (CONTRACT.md section 4): a timestamp with a time zone
# offset, or a date (00:00 UTC that day). Either way the handler gets an aware datetime.
Instant = Annotated[
    AwareDatetime, BeforeValidator(_date_or_timestamp), AfterValidator(_year_bounds),
    WithJsonSchema({"anyOf": [{"type": "string", "format": "date-time"}, {"type": "string", "format": "date"}],
                    "pattern": dict(YEARS.keywords)["pattern"]}),
    Field(description="RFC 3339 date-time with a time zone offset, or a date (00:00 UTC that day)"),
]
Finite = Annotated[float, NoCoercion(), Field(allow_inf_nan=False, ge=-1e12, le=1e12)]
def _integral(value: Any) -> Any:
    """JSON Schema counts 5.0 as an integer; strings and booleans stay refused (Strict)."""
    return int(value) if isinstance(value, float) and value.is_integer() and abs(value) < 2**53 else value


# The bounds before ``_integral`` in the metadata: pydantic then checks them in its own int validator; after a
# before-validator it would check each bound with a Python function of its own (3.6 against 1.1 µs for a PHQ-9's
# nine items; bench/JOURNAL.md, eleventh round). The errors and the JSON Schema are the same either way.
SmallInt = Annotated[int, NoCoercion(), Field(ge=-32768, le=32767), BeforeValidator(_integral)]
Rating = Annotated[int, NoCoercion(), Field(ge=0, le=10), BeforeValidator(_integral)]
Flag = Annotated[bool, NoCoercion()]


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
    return uuid7s(1)[0]


_VERSION_VARIANT = (0x7 << 76) | (0b10 << 62)  # version 7 and RFC 9562's variant, in place
_RAND_B = (1 << 62) - 1
_UNKNOWN = SafeUUID.unknown


def uuid7s(count: int) -> list[UUID]:
    """``count`` UUIDs as ``uuid7`` makes them, with one read of the system's randomness for all: 48 bits of Unix
    milliseconds, the version, 12 random bits, the variant, 62 random bits. Each UUID gets its two attributes (``int``,
    ``is_safe``) as ``UUID(int=...)`` sets them, without ``UUID.__init__``'s checks of arguments that are built here:
    4 % of the instructions of W3's batch of 100 (bench/JOURNAL.md, nineteenth round)."""
    head = ((time.time_ns() // 1_000_000) & ((1 << 48) - 1)) << 80 | _VERSION_VARIANT
    random = os.urandom(10 * count)
    made: list[UUID] = []
    for i in range(0, 10 * count, 10):
        rand = int.from_bytes(random[i:i + 10], "big")
        made.append(uuid := object.__new__(UUID))
        object.__setattr__(uuid, "int", head | ((rand >> 62) & 0xFFF) << 64 | rand & _RAND_B)
        object.__setattr__(uuid, "is_safe", _UNKNOWN)
    return made


def list_of(item: Any) -> Any:
    """``list[item]`` for an item type built at run time (a collection's schema, a GraphQL type): the very object
    the subscript makes, written as a call so that a type checker reads it as a value, not a type expression."""
    return GenericAlias(list, (item,))


def patch_model(create: type[BaseModel], name: str) -> type[BaseModel]:
    """The PATCH body of a collection: every field of its create body, none required.

    Omitted fields keep their value; an explicit null is accepted only where the field is nullable,
    because defaults are not validated but given values are.
    """
    from pydantic import create_model
    from pydantic.fields import FieldInfo

    fields: dict[str, Any] = {
        # The create field as declared (constraints, description, schema extras), only its default dropped.
        name: (info.annotation, FieldInfo.merge_field_infos(info, default=None, default_factory=None))
        for name, info in create.model_fields.items()
    }
    return create_model(name, __base__=Strict, **fields)
