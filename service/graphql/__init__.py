"""GraphQL (CONTRACT.md section 5): one Strawberry schema generated from the collection registry, over the
same service layer as REST."""

from service.graphql.router import graphql_router
from service.graphql.schema import build_schema, schema_sdl

__all__ = ["build_schema", "graphql_router", "schema_sdl"]
