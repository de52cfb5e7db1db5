from __future__ import annotations

from datetime import date

from sqlalchemy import Date, ForeignKeyConstraint, Text
from sqlalchemy.orm import Mapped, mapped_column

from service.domain.enums import ClientStatus
from service.models.base import Base, RecordMixin, enum_check


class Client(RecordMixin, Base):
    """The person in care. ``external_ids`` holds the EHR identifiers (``identifiers`` in the API)."""

    __tablename__ = "clients"
    __table_args__ = (
        ForeignKeyConstraint(["org_id"], ["organizations.id"]),
        enum_check("status", ClientStatus),
    )

    display_name: Mapped[str] = mapped_column(Text)
    birth_date: Mapped[date | None] = mapped_column(Date)
    preferred_language: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    preferred_future: Mapped[str | None] = mapped_column(Text)
