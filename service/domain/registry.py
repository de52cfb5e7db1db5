"""Importing this module registers every collection, in the order their routes are listed."""

from service.collections.registry import REGISTRY
from service.domain import clients, goals, outcomes, strengths  # noqa: F401

COLLECTIONS = list(REGISTRY.values())
