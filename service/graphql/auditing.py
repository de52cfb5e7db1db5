"""The audit action of a GraphQL request: every request is a POST, so the method cannot tell a query's
reads from a mutation's writes. A query's records are audited as ``read``; a mutation's written records
keep the action of their write (service.audit.service), as in REST."""

from collections.abc import Iterator

from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from service.audit import service as audit


class AuditAction(SchemaExtension):
    def on_execute(self) -> Iterator[None]:
        if self.execution_context.operation_type is OperationType.QUERY:
            audit.set_action("read")
        yield
