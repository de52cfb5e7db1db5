"""A root field's selection as a *shape*: what its one SQL statement must build, key by key, with the values that
vary from request to request (nested page sizes, cursors) as named parameters. Equal shapes compile to the same
statement (``sql.py`` caches it), so a document sent again with other values is not compiled again; only the root
page's size is part of the root's shape (``sql.RootShape.first``: written in the SQL, for PostgreSQL's plan cache).

Two modes, one planner:

- ``response``: the statement writes the response's JSON for the field, keys in response order (aliases
  included), ``__typename`` and nulls written out: the whole-response path forwards it as it is.
- ``resolvers``: the statement writes the values the stock executor's resolvers read: plain fields under their
  Python names (what Strawberry's default resolver reads; aliases of one field share the value, their selections
  merged), relations under their response key and arguments (what their resolvers compute), plus each record's
  ``id`` and ``@type`` (its collection, for the Node interface and the resolvers of uncompiled fields).

Access is decided here, as the resolvers decide it: a relation is compiled only when the token has its scope and its
arguments are valid. Otherwise it is left out of the statement (so never read) and the plan is marked incomplete:
its resolver then reports the error, per record, exactly as before, and the whole-response path declines the
request. So does a field with a resolver of its own (``Client.progress``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from graphql import FieldNode

from service.collections.registry import REGISTRY, Collection
from service.errors import DomainError
from service.graphql.limits import DEFAULT_FIRST, check_page
from service.graphql.relations import Relation, by_graphql_name
from service.graphql.selection import ABSENT, Doc, NotPlain, argument, subselections
from service.graphql.specs import Spec, nested_specs, record_specs, type_name

Mode = Literal["response", "resolvers"]


@dataclass(frozen=True)
class Value:
    """A field read from the row (or from a key of the enclosing JSON object); ``nested`` shapes a nested object."""

    key: str
    spec: Spec
    nested: NestedShape | None = None


@dataclass(frozen=True)
class Const:
    """A constant of the response: ``__typename``, or null for an output-only field."""

    key: str
    value: str | None


@dataclass(frozen=True)
class NestedShape:
    entries: tuple[Value | Const, ...]


@dataclass(frozen=True)
class RecordShape:
    coll: str
    entries: tuple[Value | Const | Rel, ...]


@dataclass(frozen=True)
class Part:
    """A field of a connection, edge or page-info object: ``part`` is edges, pageInfo, node, cursor, hasNextPage,
    endCursor or __typename."""

    key: str
    part: str
    sub: ConnSub | RecordShape | None = None


@dataclass(frozen=True)
class ConnSub:
    parts: tuple[Part, ...]


@dataclass(frozen=True)
class ConnShape:
    coll: str
    parts: tuple[Part, ...]


@dataclass(frozen=True)
class Rel:
    """A relation: ``key`` is a literal, or (resolvers mode, pages) the name of the parameter holding it."""

    key: str
    key_is_param: bool
    relation: Relation
    shape: RecordShape | ConnShape
    first: str | None = None  # parameter names (pages)
    after: str | None = None


@dataclass
class Planner:
    doc: Doc
    allows: Callable[[str, str], bool]
    mode: Mode
    params: dict[str, Any] = field(default_factory=dict)
    complete: bool = True  # False: something is left to a resolver (an error to report, a field of its own)

    def _param(self, suffix: str, value: Any) -> str:
        name = f"p{len(self.params)}_{suffix}"
        self.params[name] = value
        return name

    # ------------------------------------------------------------ records

    def record(self, coll: Collection, nodes: list[FieldNode]) -> RecordShape:
        specs, relations, own = record_specs(coll.name), by_graphql_name(coll.name), type_name(coll)
        applies = lambda cond: cond in (own, "Node")  # noqa: E731
        groups: dict[str, tuple[str, list[FieldNode]]] = {}
        if self.mode == "resolvers":
            groups["id"] = ("id", [])
        for key, fnodes in self.doc.grouped(subselections(nodes), applies).items():
            name = fnodes[0].name.value
            merge = self._merge_key(key, name, fnodes, specs, relations)
            if merge is not None:
                groups.setdefault(merge, (name, []))[1].extend(fnodes)
        entries: list[Value | Const | Rel] = []
        for merge, (name, fnodes) in groups.items():
            entry = self._record_entry(coll, merge, name, fnodes, specs, relations)
            if entry is not None:
                entries.append(entry)
        if self.mode == "resolvers":
            entries.append(Const("@type", coll.name))
        return RecordShape(coll.name, tuple(entries))

    def _merge_key(self, key: str, name: str, fnodes: list[FieldNode], specs: dict[str, Spec],
                   relations: dict[str, Relation]) -> str | None:
        """The output key the field's value goes under (None: not compiled)."""
        if self.mode == "response":
            return key
        if name == "__typename":
            return None  # graphql-core answers it
        if name in specs:
            return specs[name].name
        rel = relations.get(name)
        if rel is None:
            self.complete = False  # a field with a resolver of its own
            return None
        if rel.kind != "children":
            return key
        args = self._page_args(rel, fnodes[0])
        return None if args is None else page_key(key, *args)

    def _record_entry(self, coll: Collection, merge: str, name: str, fnodes: list[FieldNode],
                      specs: dict[str, Spec], relations: dict[str, Relation]) -> Value | Const | Rel | None:
        if name == "__typename":
            return Const(merge, type_name(coll))
        spec = specs.get(name)
        if spec is not None:
            if spec.source == "none":
                return Const(merge, None) if self.mode == "response" else None
            nested = self.nested(spec, fnodes) if spec.nested and self.mode == "response" else None
            return Value(merge, spec, nested)
        rel = relations.get(name)
        if rel is None:
            self.complete = False
            return None
        return self.relation(rel, merge, fnodes)

    def nested(self, spec: Spec, fnodes: list[FieldNode]) -> NestedShape:
        own = spec.base.__name__
        entries: list[Value | Const] = []
        specs = nested_specs(spec.base)
        for key, nodes in self.doc.grouped(subselections(fnodes), lambda cond: cond == own).items():
            name = nodes[0].name.value
            if name == "__typename":
                entries.append(Const(key, own))
            else:
                inner = specs[name]
                entries.append(Value(key, inner, self.nested(inner, nodes) if inner.nested else None))
        return NestedShape(tuple(entries))

    # ------------------------------------------------------------ relations

    def _page_args(self, rel: Relation, node: FieldNode) -> tuple[int, str | None] | None:
        """(first, after) of a page of children, or None when its resolver will refuse them (or the scope)."""
        if not self.allows(rel.target.resource, rel.perm):
            self.complete = False
            return None
        try:
            first = self.doc.value(argument(node, "first"))
            after = self.doc.value(argument(node, "after"))
        except NotPlain:
            self.complete = False
            return None
        first = DEFAULT_FIRST if first is ABSENT else first
        after = None if after is ABSENT else after
        try:
            if not isinstance(first, int) or isinstance(first, bool) or not (after is None or isinstance(after, str)):
                raise NotPlain("page")
            check_page(first, after)
        except (DomainError, NotPlain):
            self.complete = False
            return None
        return first, after

    def relation(self, rel: Relation, merge: str, fnodes: list[FieldNode]) -> Rel | None:
        if rel.kind != "children":
            if not self.allows(rel.target.resource, rel.perm):
                self.complete = False
                return None
            return Rel(merge, False, rel, self.record(rel.target, fnodes))
        args = self._page_args(rel, fnodes[0])
        if args is None:
            return None
        first, after = args
        key_param = self._param("key", merge) if self.mode == "resolvers" else None
        first_param = self._param("first", first)
        after_param = None if after is None else self._param("after", _decoded(after))
        return Rel(key_param or merge, key_param is not None, rel, self.connection(rel.target, fnodes),
                   first_param, after_param)

    # ------------------------------------------------------------ connections

    def connection(self, coll: Collection, nodes: list[FieldNode]) -> ConnShape:
        own = type_name(coll)
        return ConnShape(coll.name, self._parts(f"{own}Connection", nodes, {
            "edges": lambda fn: self._parts(f"{own}Edge", fn, {"node": lambda n: self.record(coll, n)}),
            "pageInfo": lambda fn: self._parts("PageInfo", fn, {}),
        }))

    def _parts(self, gtype: str, nodes: list[FieldNode], subs: dict[str, Callable[[list[FieldNode]], Any]]) -> Any:
        groups: dict[str, tuple[str, list[FieldNode]]] = {}
        for key, fnodes in self.doc.grouped(subselections(nodes), lambda cond: cond == gtype).items():
            name = fnodes[0].name.value
            if name == "__typename" and self.mode == "resolvers":
                continue
            merge = key if self.mode == "response" else PYTHON_PARTS[name]
            groups.setdefault(merge, (name, []))[1].extend(fnodes)
        parts = []
        for merge, (name, fnodes) in groups.items():
            sub = subs[name](fnodes) if name in subs else None
            parts.append(Part(merge, name, ConnSub(sub) if isinstance(sub, tuple) else sub))
        return tuple(parts)


PYTHON_PARTS = {"edges": "edges", "pageInfo": "page_info", "node": "node", "cursor": "cursor",
                "hasNextPage": "has_next_page", "endCursor": "end_cursor"}


def page_key(key: str, first: int, after: str | None) -> str:
    """Where a page of children goes in resolvers mode: the response key with the arguments (aliases of one
    object may ask for the same relation with different pages)."""
    return f"{key}|{first}|{after or ''}"


def _decoded(after: str) -> Any:
    from service.collections.repository import decode_cursor

    return decode_cursor(after)


def collection_of(gtype_name: str) -> Collection | None:
    return next((c for c in REGISTRY.values() if type_name(c) == gtype_name), None)
