"""Declarative base with a constraint naming convention, and the columns every tenant record shares.

Every tenant table carries ``org_id`` as the first column of its primary key and of every foreign
key, so the schema can be distributed by organization (Citus) without change.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar
from uuid import UUID

from sqlalchemy import CheckConstraint, DateTime, ForeignKeyConstraint, Integer, MetaData, Table, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# The organization's identifier compartment; a patient's is that client's id (service.models.records.ExternalId).
ORG_WIDE = UUID(int=0)


def compartment_column(*, primary_key: bool = False) -> Mapped[UUID]:
    return mapped_column(primary_key=primary_key, server_default=text(f"'{ORG_WIDE}'::uuid"))


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    if TYPE_CHECKING:
        # Every model here is declared with __tablename__, so its __table__ is a Table (SQLAlchemy types it as
        # any FromClause, which has no .delete(), .c of Columns, ...).
        __table__: ClassVar[Table]


def enum_check(column: str, enum: type[StrEnum], *, nullable: bool = False) -> CheckConstraint:
    values = ", ".join(f"'{v.value}'" for v in enum)
    cond = f"{column} IN ({values})"
    if nullable:
        cond = f"{column} IS NULL OR {cond}"
    return CheckConstraint(cond, name=f"{column}_enum")


def client_fk() -> ForeignKeyConstraint:
    return ForeignKeyConstraint(["org_id", "client_id"], ["clients.org_id", "clients.id"])


def ref_fk(column: str, target: str) -> ForeignKeyConstraint:
    return ForeignKeyConstraint(["org_id", column], [f"{target}.org_id", f"{target}.id"])


class RecordMixin:
    """Columns of every versioned, soft-deleted tenant record."""

    org_id: Mapped[UUID] = mapped_column(primary_key=True)
    id: Mapped[UUID] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    version: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    external_ids: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))


class ClientOwnedMixin(RecordMixin):
    client_id: Mapped[UUID]
