"""The bodies of `/v1/webhook-subscriptions` and of the events delivered to subscribers.

(No ``from __future__ import annotations`` here: FastAPI must see the real types.)
"""

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from service.collections.types import Flag, Out, Strict, patch_model
from service.webhooks.events import ACTIONS, event_names

Url = Annotated[str, Field(min_length=8, max_length=2000, description="https:// endpoint (public address; "
                           "refused with 422 when it does not resolve to one)",
                           pattern=r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?([/?#][!-~]*)?$")]
Events = Annotated[list[Annotated[str, Field(json_schema_extra={"enum": event_names()})]],
                   Field(min_length=1, max_length=100, description="e.g. strength.updated, safety_alert.opened")]


class WebhookSubscriptionIn(Strict):
    url: Url
    events: Events
    active: Flag = True


if TYPE_CHECKING:  # a model built at import is no type to a checker: it sees a pydantic model
    WebhookSubscriptionPatch = BaseModel
else:
    WebhookSubscriptionPatch = patch_model(WebhookSubscriptionIn, "WebhookSubscriptionPatch")


class WebhookSubscriptionOut(Out):
    id: UUID
    url: str
    events: list[str]
    active: bool
    disabled_reason: str | None
    previous_secret_expires_at: datetime | None = Field(
        description="After a rotation: until when the previous secret still signs (a second signature)")
    created_at: datetime
    updated_at: datetime
    version: int


class WebhookSubscriptionCreated(WebhookSubscriptionOut):
    secret: str = Field(description="whsec_... ; shown in this response only")


class WebhookSubscriptionPage(Out):
    data: list[WebhookSubscriptionOut]
    next_cursor: str | None


class WebhookDeliveryOut(Out):
    id: UUID = Field(description="The webhook-id header of every attempt (a redelivery keeps it)")
    event: str
    event_id: UUID
    payload: dict[str, Any]
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime


class WebhookDeliveryPage(Out):
    data: list[WebhookDeliveryOut]
    next_cursor: str | None


# The events, as delivered (the Standard Webhooks envelope). Thin: no client data, only what to fetch.

class RecordEventData(Out):
    type: str = Field(description="The record's type, as in the change feed (e.g. strength)")
    id: UUID = Field(description="The record's id: read it with your own token")
    action: Literal[ACTIONS] = Field(description="What happened to the record")  # type: ignore[valid-type]
    version: int = Field(description="The record's version after the change")
    org_id: UUID
    client_id: UUID = Field(description="The client the record belongs to (for a client, its own id)")


class SafetyAlertEventData(Out):
    type: Literal["safety_alert"]
    id: UUID = Field(description="The safety alert's id")
    action: Literal["opened"]
    version: int
    org_id: UUID
    client_id: UUID = Field(description="The client the alert concerns")


class SubscriptionEventData(Out):
    type: Literal["subscription"]
    id: UUID = Field(description="The webhook subscription's id")
    action: Literal["disabled", "ping"]
    version: int = Field(description="The subscription's version")
    org_id: UUID
