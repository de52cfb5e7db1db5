"""Clients: the people in care."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from service.collections.registry import Collection, register
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


CLIENT_CHILDREN = {
    "strengths": "client_id", "protective-factors": "client_id", "exceptions": "client_id", "goals": "client_id",
    "milestones": "client_id", "outcome-markers": "client_id", "measurements": "client_id",
    "strength-uses": "client_id", "experiments": "client_id", "safety-alerts": "client_id",
}

create, patch, out = schemas(ClientIn, ext_field="identifiers")

clients = register(Collection(
    name="clients", type_name="client", resource="Client", title="Clients", table=Client.__table__,
    create=create, patch=patch, out=out, children=CLIENT_CHILDREN, ext_field="identifiers", id_param="identifier",
    client_owned=False, identity=True,
    description="The person in care.",
))
