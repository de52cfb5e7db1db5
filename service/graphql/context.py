"""Per-request context: the principal, scope checks cached per (resource, permission), the query's unit of work
(one transaction for every root field of a query, opened by ``compiled.CompiledReads``), and the document's
selections as ``selection.Doc`` reads them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from graphql import DocumentNode, FieldNode
from sqlalchemy.ext.asyncio import AsyncConnection
from strawberry.fastapi import BaseContext

from service.api.uow import unit_of_work
from service.auth.principal import Principal
from service.auth.scopes import require
from service.graphql.errors import forbidden
from service.graphql.selection import Doc


class GraphQLContext(BaseContext):
    def __init__(self, who: Principal, app_ctx: Any) -> None:
        super().__init__()
        self.who = who
        self.engine = app_ctx.engine
        self.revocations = app_ctx.tokens.revocations
        self.pinned = app_ctx.pinned  # one-round-trip reads (service.db.PinnedTenants), or None
        self.compiled_responses: bool = app_ctx.settings.graphql_compiled_responses
        self.document: DocumentNode | None = None  # set by compiled.CompiledReads before execution
        self._doc: Doc | None = None
        self._conn: AsyncConnection | None = None  # the query's unit of work
        self._lock = asyncio.Lock()  # root fields resolve concurrently; the connection serves one at a time
        self._allowed: dict[tuple[str, str], bool] = {}

    # ------------------------------------------------------------ scopes

    def allows(self, resource: str, perm: str) -> bool:
        """Whether the token allows it; parsed once, then a dictionary lookup."""
        allowed = self._allowed.get((resource, perm))
        if allowed is None:
            allowed = self._allowed[(resource, perm)] = self.who.allows(resource, perm)
        return allowed

    def require(self, resource: str, perm: str) -> None:
        """Raise FORBIDDEN unless the token allows it."""
        if not self.allows(resource, perm):  # the cache answers most; the one check raises
            require(self.who, resource, perm, refuse=forbidden)

    # ------------------------------------------------------------ the document

    def doc(self, variables: dict[str, Any]) -> Doc:
        """The document's fragments with the operation's coerced variables (the same for every resolver)."""
        if self._doc is None:
            assert self.document is not None, "CompiledReads sets the document before execution"
            self._doc = Doc.of(self.document, variables)
        return self._doc

    def root_nodes(self, operation: Any, response_key: str, variables: dict[str, Any]) -> list[FieldNode]:
        """The field nodes of a root field (fragments on the root type included), by its response key."""
        root_type = operation.operation.value.capitalize()
        grouped = self.doc(variables).grouped([operation.selection_set], lambda cond: cond == root_type)
        return grouped[response_key]

    # ------------------------------------------------------------ transactions

    def open_query(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """The query's unit of work, for the resolvers (``connection``) until it commits."""

        @asynccontextmanager
        async def opened() -> AsyncIterator[AsyncConnection]:
            async with unit_of_work(self.engine, self.who, self.revocations) as conn:
                self._conn = conn
                try:
                    yield conn
                finally:
                    self._conn = None

        return opened()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """The query's connection, one resolver at a time."""
        assert self._conn is not None, "queries run inside CompiledReads' unit of work"
        async with self._lock:
            yield self._conn

    def reading(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection to read on: the query's, or (a field under a mutation's answer) a unit of work of its own."""
        return self.connection() if self._conn is not None else self.unit_of_work()

    def unit_of_work(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A mutation field's own unit of work (each commits on its own, as before)."""
        return unit_of_work(self.engine, self.who, self.revocations)


def read_field(obj: Any, name: str) -> Any:
    """Strawberry's default resolver for fields without one: a key of a compiled record (absent: null), else an
    attribute (the progress service's models)."""
    return obj.get(name) if type(obj) is dict else getattr(obj, name)
