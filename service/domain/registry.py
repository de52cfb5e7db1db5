"""The one registry: every collection, in one fixed order (routes, OpenAPI, GraphQL, scope resources), built here."""

from service.auth.scopes import SERVICE_RESOURCES
from service.collections.registry import REGISTRY, install
from service.domain.clients import clients
from service.domain.goals import goals, milestones
from service.domain.outcomes import measurements, outcome_markers, safety_alerts
from service.domain.strengths import exceptions, experiments, protective_factors, strength_uses, strengths

COLLECTIONS = [
    clients, strengths, protective_factors, exceptions, goals, milestones, outcome_markers,
    measurements, strength_uses, experiments, safety_alerts,
]
install(COLLECTIONS)
# Every scope resource (service.auth.scopes.resources() reads the registry as it is, test collections included).
RESOURCES: tuple[str, ...] = (*dict.fromkeys(c.resource for c in COLLECTIONS), *SERVICE_RESOURCES)

__all__ = ["COLLECTIONS", "REGISTRY", "RESOURCES"]
