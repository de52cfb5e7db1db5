"""Relations of record types, and loading them per level of a query rather than per field of each record.

A ``Relation`` is what a relation field of a record type reads (a reference, a list of references, a page of
children, a marker's latest measurement) and knows how to load it for many parent records in one statement.
It is loaded one of two ways, always through ``Relation.load``:

- **Prefetch.** When a root connection has read its page, ``prefetch`` walks the document's selection under
  ``edges { node { ... } }`` and loads, in the page's own transaction, every relation selected at that level
  for all of the page's records at once (one statement per relation and level), then the relations selected
  under those, and so on. The values are stored on the records (``Obj._pre``) keyed by the field and its
  arguments, so their resolvers return them without awaiting anything.
- **DataLoader.** Anything not prefetched (another root field, a mutation's result, a relation whose scope the
  token lacks or whose arguments are invalid, so that its resolver reports the error) is loaded when its
  resolver asks, batched with its siblings by a DataLoader (``GraphQLContext.relation``).

Prefetching changes neither what is read nor who may read it: the statements start from the principal-aware
``readable()`` under the same tenant settings (row-level security), a relation is prefetched only when the
token has its scope (``ctx.allows``; the resolver still calls ``ctx.require`` and raises FORBIDDEN per field
otherwise), and records pass through the same ``record()`` (audit included).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

from graphql import (
    BooleanValueNode,
    FieldNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    IntValueNode,
    NullValueNode,
    SelectionSetNode,
    StringValueNode,
    ValueNode,
    VariableNode,
)

from service.collections.registry import REGISTRY, Collection
from service.collections.repository import decode_cursor
from service.errors import DomainError
from service.graphql.context import Obj, load_by_id, load_children, load_latest
from service.graphql.errors import camel
from service.graphql.limits import DEFAULT_FIRST, check_page

if TYPE_CHECKING:
    from service.auth.principal import Principal
    from service.graphql.context import GraphQLContext

Kind = Literal["one", "many", "children", "latest"]


@dataclass(frozen=True, eq=False)  # one instance per field (relations_of is cached): hashed by identity
class Relation:
    """A relation field of a record type: its Python name, what it reads and with which permission."""

    name: str
    kind: Kind
    target: Collection
    attr: str  # one/many: the parent's attribute naming the target; children: the child's foreign key
    perm: str  # "r" for references, "s" for lists (as the REST routes that read them)

    async def load(self, conn: Any, who: Principal, parents: Sequence[Obj], args: tuple[Any, ...]) -> list[Any]:
        """The field's value for each parent (before it is shaped into a connection), in one statement."""
        if self.kind == "one":
            ids = [getattr(p, self.attr, None) for p in parents]
            found = await load_by_id(conn, who, self.target, list(dict.fromkeys(i for i in ids if i is not None)))
            return [None if i is None else found.get(i) for i in ids]
        if self.kind == "many":
            lists = [getattr(p, self.attr, None) or [] for p in parents]
            found = await load_by_id(conn, who, self.target, list(dict.fromkeys(i for ids in lists for i in ids)))
            return [[found[i] for i in ids if i in found] for ids in lists]
        parent_ids = [p.id for p in parents]
        if self.kind == "children":
            first, after = args
            grouped = await load_children(conn, who, self.target, self.attr, parent_ids, first,
                                          decode_cursor(after) if after else None)
            return [grouped.get(p, []) for p in parent_ids]
        found = await load_latest(conn, who, parent_ids)
        return [found.get(p) for p in parent_ids]

    def children_shown(self, value: Any, args: tuple[Any, ...]) -> list[Obj]:
        """The records of a loaded value that the query reads further."""
        if self.kind == "children":
            return value[: args[0]]  # type: ignore[no-any-return]
        if self.kind == "many":
            return value  # type: ignore[no-any-return]
        return [] if value is None else [value]


@cache
def relations_of(coll_name: str) -> dict[str, Relation]:
    """The relation fields of a collection's record type, by Python name."""
    coll = REGISTRY[coll_name]
    out: list[Relation] = []
    if coll.client_owned:
        out.append(Relation("client", "one", REGISTRY["clients"], "client_id", "r"))
    for ref in coll.refs:
        if "." in ref.field:
            continue
        target = REGISTRY[ref.target]
        if ref.many:
            out.append(Relation(ref.field.removesuffix("_ids") + "s", "many", target, ref.field, "r"))
        else:
            out.append(Relation(ref.field.removesuffix("_id"), "one", target, ref.field, "r"))
    for child_name, fk in coll.children.items():
        child = REGISTRY[child_name]
        out.append(Relation(child.key, "children", child, fk, "s"))
    if coll.name == "outcome-markers":
        out.append(Relation("latest_measurement", "latest", REGISTRY["measurements"], "marker_id", "s"))
    return {rel.name: rel for rel in out}


@cache
def _by_graphql_name(coll_name: str) -> dict[str, Relation]:
    return {camel(rel.name): rel for rel in relations_of(coll_name).values()}


# ---------------------------------------------------------------- the document's selections

_NOT_STATIC = object()  # an argument this module does not evaluate: the field is left to its DataLoader


class _Document:
    def __init__(self, fragments: dict[str, Any], variables: dict[str, Any]) -> None:
        self.fragments = fragments
        self.variables = variables

    def value(self, node: ValueNode | None, default: Any) -> Any:
        if node is None:
            return default
        if isinstance(node, VariableNode):
            return self.variables.get(node.name.value, default)
        if isinstance(node, IntValueNode):
            return int(node.value)
        if isinstance(node, StringValueNode | BooleanValueNode):
            return node.value
        if isinstance(node, NullValueNode):
            return None
        return _NOT_STATIC

    def included(self, node: Any) -> bool:
        """@skip / @include; what cannot be told is included (at worst one statement too many)."""
        for directive in node.directives or ():
            name = directive.name.value
            if name in ("skip", "include"):
                arg = next((a.value for a in directive.arguments or () if a.name.value == "if"), None)
                flag = self.value(arg, None)
                if flag is (name == "skip"):
                    return False
        return True

    def fields(self, selection_sets: Iterable[SelectionSetNode]) -> Iterator[FieldNode]:
        """The fields of the selection sets, fragments flattened (validation rejected cycles)."""
        for selection_set in selection_sets:
            for sel in selection_set.selections:
                if not self.included(sel):
                    continue
                if isinstance(sel, FieldNode):
                    yield sel
                elif isinstance(sel, InlineFragmentNode):
                    yield from self.fields([sel.selection_set])
                elif isinstance(sel, FragmentSpreadNode):
                    fragment = self.fragments.get(sel.name.value)
                    if fragment is not None:
                        yield from self.fields([fragment.selection_set])

    def under(self, selection_sets: Iterable[SelectionSetNode], name: str) -> list[SelectionSetNode]:
        return [f.selection_set for f in self.fields(selection_sets) if f.name.value == name and f.selection_set]

    def args(self, rel: Relation, node: FieldNode) -> tuple[Any, ...] | None:
        """The arguments as the resolver receives them (its key in ``Obj._pre``), or None to leave it alone."""
        if rel.kind != "children":
            return ()
        given = {a.name.value: a.value for a in node.arguments or ()}
        first = self.value(given.get("first"), DEFAULT_FIRST)
        after = self.value(given.get("after"), None)
        if not isinstance(first, int) or not (after is None or isinstance(after, str)):
            return None  # an argument this module does not evaluate
        try:
            check_page(first, after)
        except DomainError:
            return None  # the resolver reports it
        return (first, after)


# ---------------------------------------------------------------- loading level by level


async def prefetch(ctx: GraphQLContext, conn: Any, coll: Collection, records: Sequence[Obj], info: Any) -> None:
    """Load the relations the document selects under ``edges { node { ... } }`` of the connection field being
    resolved, on its ``records`` (of ``coll``), level by level, on ``conn``."""
    raw = info._raw_info
    doc = _Document(raw.fragments, info.variable_values or {})
    nodes = doc.under(doc.under([n.selection_set for n in raw.field_nodes if n.selection_set], "edges"), "node")
    await _level(ctx, conn, doc, coll, records, nodes)


async def _level(ctx: GraphQLContext, conn: Any, doc: _Document, coll: Collection, records: Sequence[Obj],
                 selection_sets: list[SelectionSetNode]) -> None:
    if not records or not selection_sets:
        return
    relations = _by_graphql_name(coll.name)
    wanted: dict[tuple[str, tuple[Any, ...]], list[SelectionSetNode]] = {}
    for node in doc.fields(selection_sets):
        rel = relations.get(node.name.value)
        if rel is None or not ctx.allows(rel.target.resource, rel.perm):
            continue
        args = doc.args(rel, node)
        if args is not None:
            subs = wanted.setdefault((rel.name, args), [])
            if node.selection_set:
                subs.append(node.selection_set)
    for (name, args), subs in wanted.items():
        rel = relations_of(coll.name)[name]
        values = await rel.load(conn, ctx.who, records, args)
        shown: dict[int, Obj] = {}
        for parent, value in zip(records, values, strict=True):
            if parent._pre is None:
                parent._pre = {}
            parent._pre[(name, args)] = value
            shown.update((id(o), o) for o in rel.children_shown(value, args))
        below = doc.under(doc.under(subs, "edges"), "node") if rel.kind == "children" else subs
        await _level(ctx, conn, doc, rel.target, list(shown.values()), below)


MISSING: Any = object()


def prefetched(root: Any, key: tuple[str, tuple[Any, ...]]) -> Any:
    """The value prefetched for this field of this record, or ``MISSING``."""
    pre = getattr(root, "_pre", None)
    return MISSING if pre is None else pre.get(key, MISSING)

__all__ = ["MISSING", "Relation", "prefetch", "prefetched", "relations_of"]
