"""Opaque paging cursors: a 3-byte tag and fixed-width fields, base64url without padding.

Each kind of cursor has an exact shape, so OpenAPI can declare it (``pattern``) and every string of that
shape decodes to a position: a cursor is a place in an ordered list, never a grant, and lists always
start from the principal-aware statement, so a forged cursor can only skip rows the caller may see.
Anything not of the shape is a 422 naming the parameter.
"""

from __future__ import annotations

import base64
import re
import struct
from typing import Any

from pydantic import Field

from service.errors import ValidationFailed


class CursorKind:
    def __init__(self, tag: bytes, fmt: str) -> None:
        assert len(tag) == 3
        self.tag = tag
        self.struct = struct.Struct(">" + fmt)
        size = 3 + self.struct.size
        chars = (size * 8 + 5) // 6
        prefix = base64.urlsafe_b64encode(tag).decode()
        self.pattern = f"^(?:{prefix}[A-Za-z0-9_-]{{{chars - 4}}})?$"  # empty: the first page
        self._regex = re.compile(self.pattern)

    def encode(self, *values: Any) -> str:
        return base64.urlsafe_b64encode(self.tag + self.struct.pack(*values)).decode().rstrip("=")

    def decode(self, cursor: str, field: str) -> tuple[Any, ...]:
        if not cursor or not self._regex.match(cursor):
            raise ValidationFailed.on(field, "The cursor is not one this service issued", "invalid_cursor")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return self.struct.unpack(raw[3:])

    def field(self, description: str = "Opaque cursor from next_cursor") -> Any:
        """The cursor field of a query parameter model (service.http.QueryParams), declared with its pattern."""
        return Field(None, description=description, json_schema_extra={"pattern": self.pattern})


RECORDS = CursorKind(b"v1:", "16s")  # the last id of the page (collections, webhook subscriptions, GraphQL)
AUDIT = CursorKind(b"au1", "q")  # the last audit event's seq
CHANGES = CursorKind(b"cf1", "qq")  # (txid, seq) of the last change
FHIR = CursorKind(b"fh1", "qi16s")  # (sort key in microseconds since the epoch, collection number, id)
