"""Clients: the people in care."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from service.collections.registry import Collection
from service.collections.schemas import schemas
from service.collections.types import Day, ExternalIds, ShortText, Strict, Text
from service.domain.enums import ClientStatus
from service.models import Client

LanguageTag = Annotated[str, Field(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,4}$", max_length=35,
                                   description="BCP 47 language tag, e.g. en, es-MX")]


class ClientIn(Strict):
    display_name: ShortText
    identifiers: ExternalIds = Field(default_factory=list, description="EHR identifiers (MRNs): system and value")
    birth_date: Day | None = None
    preferred_language: LanguageTag | None = None
    status: ClientStatus = ClientStatus.active
    preferred_future: Text | None = Field(
        default=None, description="The client's vision of life after therapy, in their own words"
    )


create, patch, out = schemas(ClientIn, ext_field="identifiers")

clients = Collection(
    name="clients", type_name="client", resource="Client", title="Clients", table=Client.__table__,
    create=create, patch=patch, out=out, ext_field="identifiers", client_owned=False,
    identity=True, identifier_param="identifier", owner_column="id",  # ?include= children: every client-owned one
    description="The person in care.",
)
