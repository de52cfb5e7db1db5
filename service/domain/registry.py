"""Importing this module registers every collection, in one fixed order (routes, OpenAPI, GraphQL)."""

from service.collections.registry import REGISTRY
from service.domain import clients, goals, outcomes, strengths  # noqa: F401

ORDER = [
    "clients", "strengths", "protective-factors", "exceptions", "goals", "milestones", "outcome-markers",
    "measurements", "strength-uses", "experiments", "safety-alerts",
]
_ordered = {name: REGISTRY[name] for name in ORDER} | REGISTRY
REGISTRY.clear()
REGISTRY.update(_ordered)

COLLECTIONS = list(REGISTRY.values())
