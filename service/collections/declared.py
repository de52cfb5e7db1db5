"""What the write machinery does with a collection's declared variations (``Collection.computed``,
``Collection.immutable``): writes return the computed fields as reads select them, the history keeps the
stored fields only, and an immutable field is never changed."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from service.collections.registry import Collection
from service.errors import ImmutableField, field_error


def returning(coll: Collection, write: Any) -> Any:
    """An INSERT or UPDATE that returns the row with its computed fields, as a read selects them (computed over
    the written row in a CTE: SQLAlchemy does not correlate subqueries in an INSERT's RETURNING)."""
    if not coll.computed:
        return write.returning(*coll.table.c)
    written = write.returning(*coll.table.c).cte("written")
    # Labelled with the table's own names (plain str: a CTE's column names are SQLAlchemy's quoted_name, which
    # orjson refuses as dictionary keys).
    return select(*(written.c[c.key].label(c.key) for c in coll.table.c), *coll.computed_columns(written))


def snapshot(coll: Collection, out: dict[str, Any]) -> dict[str, Any]:
    """The version kept in the history: the stored fields (not the computed ones, which change without it)."""
    return {**{k: v for k, v in out.items() if k not in coll.computed}, "deleted_at": None}


def check_immutable(coll: Collection, current: dict[str, Any], changes: dict[str, Any]) -> None:
    """A write may repeat an immutable field's stored value (as a PUT of the whole record does) or leave it out
    (null), never change it: a 422 naming each field it would change."""
    errors = [field_error(name, f"{name} never changes once the {coll.type_name.replace('_', ' ')} exists",
                          "immutable_field")
              for name in coll.immutable
              if changes.get(name) is not None and changes[name] != current.get(name)]
    if errors:
        raise ImmutableField(f"{', '.join(e['field'] for e in errors)} cannot change", errors=errors)
