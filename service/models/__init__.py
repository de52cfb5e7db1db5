"""The ORM: one dense graph (client -> goal -> milestone, marker -> measurement), kept together."""

from service.models.audit import AuditEvent
from service.models.base import Base
from service.models.client import Client
from service.models.export import BulkExportChunk, BulkExportFile, BulkExportJob
from service.models.goal import Goal, Milestone
from service.models.oauth import AppGrant, AppLink, AuthorizationCode, RefreshToken, RevokedToken, UsedAssertion
from service.models.org import App, Organization, SigningKey
from service.models.outcome import Measurement, OutcomeMarker, SafetyAlert
from service.models.records import Change, ExternalId, History, IdempotencyKey
from service.models.strength import Exception_, Experiment, ProtectiveFactor, Strength, StrengthUse
from service.models.webhook import WebhookDelivery, WebhookEvent, WebhookSubscription

__all__ = [
    "App", "AppGrant", "AppLink", "AuditEvent", "AuthorizationCode", "Base", "BulkExportChunk", "BulkExportFile",
    "BulkExportJob", "Change", "Client", "Exception_", "Experiment", "ExternalId", "Goal", "History",
    "IdempotencyKey",
    "Measurement", "Milestone", "Organization", "OutcomeMarker", "ProtectiveFactor", "SafetyAlert",
    "RefreshToken", "RevokedToken", "SigningKey", "Strength", "StrengthUse", "UsedAssertion",
    "WebhookDelivery", "WebhookEvent", "WebhookSubscription",
]
