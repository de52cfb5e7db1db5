"""A root field's shape as one SQL statement that builds its JSON, nesting with lateral joins, ``json_agg`` and
``json_build_object`` as PostGraphile does, and what the audit trail must note.

Every table is read through the principal-aware ``readable()`` (organization, and patient for a patient token),
under row-level security, like every other read. For each record the statement also writes an audit entry,
``Resource:id:client``, and joins them: the records shown, and as the previous implementation noted them the extra
row a page of children reads to tell whether more follow (not its relations, which are not read).

The statement returns one row ``(json text, audit text)``; an absent record is no row. It is compiled once per
shape, dialect and kind of principal (``CompiledRead``) and run on the unit of work's asyncpg connection.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Literal

from pydantic import AwareDatetime
from sqlalchemy import (
    ColumnElement,
    FromClause,
    Integer,
    Select,
    Text,
    Uuid,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    null,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import JSON, aggregate_order_by

from service.auth.principal import Principal
from service.collections.registry import REGISTRY, Collection
from service.collections.repository import CompiledRead, after_row, readable
from service.collections.service import list_statement
from service.collections.sqljson import float_json, iso_datetime, record_cursor
from service.graphql.shapes import ConnShape, ConnSub, Const, Mode, NestedShape, Part, RecordShape, Rel, Value
from service.graphql.specs import Spec, type_name

MAX_PAIRS = 50  # json_build_object takes at most 100 arguments


@dataclass(frozen=True)
class RootShape:
    """What one root field reads: a record by id, a page, or a record of any readable collection (``node``)."""

    kind: Literal["one", "page", "node"]
    mode: Mode
    shapes: tuple[RecordShape | ConnShape, ...]
    filters: tuple[str, ...] = ()  # page: the filters given (their values are parameters ``f_<name>``)
    after: bool = False  # page: a cursor was given (parameter ``after``)


@lru_cache(maxsize=512)
def compiled(root: RootShape) -> CompiledRead:
    return CompiledRead(lambda who: Builder(who).root(root))


# ---------------------------------------------------------------- JSON building blocks


def _key(name: str) -> ColumnElement[Any]:
    return literal_column("'" + name.replace("'", "''") + "'", Text)


def jobj(pairs: Sequence[tuple[ColumnElement[Any], ColumnElement[Any]]]) -> ColumnElement[Any]:
    """``json_build_object`` of the pairs, in order; beyond 50 pairs, chunks joined as text (still in order)."""
    if len(pairs) <= MAX_PAIRS:
        return func.json_build_object(*itertools.chain.from_iterable(pairs), type_=JSON)
    chunks = [cast(jobj(pairs[i:i + MAX_PAIRS]), Text) for i in range(0, len(pairs), MAX_PAIRS)]
    text: ColumnElement[Any] = func.left(chunks[0], -1)
    for chunk in chunks[1:]:
        text = text.concat(literal_column("', '")).concat(func.substr(chunk, 2))
    return cast(text, JSON)


def jagg(value: ColumnElement[Any], order: ColumnElement[Any],
         where: ColumnElement[Any] | None = None) -> ColumnElement[Any]:
    agg = func.json_agg(aggregate_order_by(value, order))
    return func.coalesce(agg if where is None else agg.filter(where), literal_column("'[]'::json", JSON))


def _const(value: str | None) -> ColumnElement[Any]:
    return null() if value is None else _key(value)


def _typed(value: ColumnElement[Any], spec: Spec) -> ColumnElement[Any]:
    """A column as the service writes its value in JSON (timestamps, whole floats, renamed enum values)."""
    if spec.many:
        return value
    if spec.base in (datetime, AwareDatetime):
        return iso_datetime(value)
    if spec.base is float:
        return float_json(value)
    renamed = spec.renamed_enum()
    if renamed:
        return case(*((value == old, _key(new)) for old, new in renamed.items()), else_=value)
    return value


# ---------------------------------------------------------------- the statement


class Builder:
    def __init__(self, who: Principal) -> None:
        self.who = who
        self._n = itertools.count()

    def name(self, prefix: str) -> str:
        return f"{prefix}{next(self._n)}"

    # ------------------------------------------------------------ roots

    def root(self, root: RootShape) -> Select[Any]:
        if root.kind == "page":
            shape = root.shapes[0]
            assert isinstance(shape, ConnShape)
            coll = REGISTRY[shape.coll]
            filters: dict[str, Any] = {name: bindparam(f"f_{name}", None) for name in root.filters}
            if "external_id" in filters:
                filters["external_id"] = (bindparam("f_system", None), bindparam("f_value", None))
            base = list_statement(self.who, coll, filters=filters, cursor=None)
            if root.after:
                base = base.where(after_row(coll, self.who, bindparam("after", None, type_=Uuid)))
            first = bindparam("first", None, type_=Integer)
            rows = self._numbered(coll, shape, base, first).subquery(self.name("t"))
            page = self._page(shape, rows, first, audit_extra=False).subquery(self.name("p"))
            return select(cast(page.c.j, Text).label("j"), page.c.a)
        selects = []
        for shape in root.shapes:
            assert isinstance(shape, RecordShape)
            coll = REGISTRY[shape.coll]
            base = self._readable(coll, [shape]).where(coll.table.c.id == bindparam("id", None, type_=Uuid),
                                                       coll.table.c.deleted_at.is_(None))
            rows = base.subquery(self.name("t"))
            frm, j, a, _ = self.record(shape, rows)
            selects.append(select(cast(j, Text).label("j"), a.label("a")).select_from(frm))
        if len(selects) == 1:
            return selects[0]
        union = selects[0].union_all(*selects[1:]).subquery(self.name("u"))
        return select(union.c.j, union.c.a).limit(1)

    # ------------------------------------------------------------ records

    def _readable(self, coll: Collection, shapes: Sequence[RecordShape]) -> Select[Any]:
        """The collection's rows as the principal may read them: the columns the shapes read (narrow rows through
        the sorts and joins), with the SQL-derived fields they select."""
        return _narrow(readable(coll.table, self.who), coll, shapes)

    def record(self, shape: RecordShape, rows: FromClause, gate: ColumnElement[Any] | None = None,
               frm: FromClause | None = None,
               ) -> tuple[FromClause, ColumnElement[Any], ColumnElement[Any], ColumnElement[Any]]:
        """(FROM with the relations' lateral joins, the record's JSON, its audit entries with its relations', its
        own audit entry). ``gate``: relations are read only where it holds (a page's extra row has none)."""
        coll = REGISTRY[shape.coll]
        frm = rows if frm is None else frm
        pairs: list[tuple[ColumnElement[Any], ColumnElement[Any]]] = []
        client = rows.c.id if coll.name == "clients" else rows.c.client_id
        own = func.concat(literal_column(f"'{coll.resource}:'"), rows.c.id, literal_column("':'"), client)
        audit: list[ColumnElement[Any]] = [own]  # the relations' entries follow
        for entry in shape.entries:
            if isinstance(entry, Const):
                pairs.append((_key(entry.key), _const(entry.value)))
            elif isinstance(entry, Value):
                pairs.append((_key(entry.key), self.value(coll, entry, rows)))
            else:
                lateral = self.relation(entry, rows, gate)
                frm = frm.outerjoin(lateral, true())
                key = bindparam(entry.key, None, type_=Text) if entry.key_is_param else _key(entry.key)
                pairs.append((key, lateral.c.j))
                audit.append(lateral.c.a)
        return frm, jobj(pairs), func.concat_ws(literal_column("','"), *audit), own

    def value(self, coll: Collection, entry: Value, rows: FromClause) -> ColumnElement[Any]:
        spec = entry.spec
        if spec.source == "sql":
            return rows.c[f"o_{spec.name}"]
        if spec.source == "computed":
            return _typed(rows.c[f"c_{spec.name}"], spec)
        column: ColumnElement[Any] = rows.c.external_ids if spec.source == "ext" else rows.c[spec.name]
        if spec.source == "ext":
            column = func.coalesce(column, literal_column("'[]'::jsonb"))
        if spec.nested:
            return column if entry.nested is None else self.nested(entry.nested, column, spec.many)
        return _typed(column, spec)

    def nested(self, shape: NestedShape, doc: ColumnElement[Any], many: bool) -> ColumnElement[Any]:
        """A JSON column's object (or list of objects) reshaped to the selection: keys renamed and ordered."""
        if many:
            elements = func.jsonb_array_elements(doc).table_valued("e", with_ordinality="o").render_derived()
            obj = self._nested_obj(shape, elements.c.e)
            return select(jagg(obj, elements.c.o)).select_from(elements).scalar_subquery()
        return case((func.jsonb_typeof(doc) == literal_column("'object'"), self._nested_obj(shape, doc)), else_=null())

    def _nested_obj(self, shape: NestedShape, doc: ColumnElement[Any]) -> ColumnElement[Any]:
        pairs = []
        for entry in shape.entries:
            if isinstance(entry, Const):
                pairs.append((_key(entry.key), _const(entry.value)))
                continue
            spec = entry.spec
            value: ColumnElement[Any] = doc.op("->")(literal_column(f"'{spec.name}'"))
            if entry.nested is not None:
                value = self.nested(entry.nested, value, spec.many)
            elif spec.renamed_enum():
                text = doc.op("->>")(literal_column(f"'{spec.name}'"))
                value = case(*((text == old, _key(new)) for old, new in spec.renamed_enum().items()), else_=value)
            pairs.append((_key(entry.key), value))
        return jobj(pairs)

    # ------------------------------------------------------------ relations

    def relation(self, rel: Rel, parent: FromClause, gate: ColumnElement[Any] | None) -> FromClause:
        relation, target = rel.relation, rel.relation.target
        table = target.table
        open_ = table.c.deleted_at.is_(None) if gate is None else and_(table.c.deleted_at.is_(None), gate)
        if relation.kind == "children":
            assert isinstance(rel.shape, ConnShape)
            assert rel.first is not None
            first = bindparam(rel.first, None, type_=Integer)
            base = readable(table, self.who).where(table.c[relation.attr] == parent.c.id, open_).correlate(parent)
            if rel.after is not None:
                base = base.where(after_row(target, self.who, bindparam(rel.after, None, type_=Uuid)))
            rows = self._numbered(target, rel.shape, base, first).lateral(self.name("t"))
            return self._page(rel.shape, rows, first, audit_extra=True).lateral(self.name("r"))
        assert isinstance(rel.shape, RecordShape)
        if relation.kind == "many":
            return self._many(rel.shape, target, parent, parent.c[relation.attr], open_)
        base = self._readable(target, [rel.shape]).where(open_).correlate(parent)
        if relation.kind == "one":
            base = base.where(table.c.id == parent.c[relation.attr])
        else:  # latest
            base = base.where(table.c[relation.attr] == parent.c.id).order_by(
                table.c.observed_at.desc(), table.c.id.desc()).limit(1)
        rows = base.lateral(self.name("t"))
        frm, j, a, _ = self.record(rel.shape, rows)
        return select(j.label("j"), a.label("a")).select_from(frm).lateral(self.name("r"))

    def _many(self, shape: RecordShape, target: Collection, parent: FromClause, ids: ColumnElement[Any],
              open_: ColumnElement[Any]) -> FromClause:
        """The records a list of ids names, in its order (repeats included), those the principal may read."""
        listed = func.unnest(ids).table_valued("id", with_ordinality="o").render_derived(name=self.name("u"))
        table = target.table
        rows = self._readable(target, [shape]).where(open_, table.c.id == listed.c.id).add_columns(
            listed.c.o.label("_o")).correlate(parent).lateral(self.name("t"))
        frm, j, a, _ = self.record(shape, rows)
        inner = select(j.label("j"), a.label("a"), rows.c._o).select_from(frm).lateral(self.name("x"))
        return select(jagg(inner.c.j, inner.c._o).label("j"),
                      func.string_agg(inner.c.a, literal_column("','")).label("a")).lateral(self.name("r"))

    # ------------------------------------------------------------ pages

    def _numbered(self, coll: Collection, shape: ConnShape, base: Select[Any], first: Any) -> Select[Any]:
        """Up to ``first + 1`` rows in the collection's list order (one more tells whether more follow), numbered
        in that order (``_n``: edges and the end cursor follow it)."""
        keys = coll.list_keys()
        return (_narrow(base, coll, _node_shapes(shape))
                .add_columns(func.row_number().over(order_by=keys).label("_n"))
                .order_by(None).order_by(*keys).limit(first + literal_column("1", Integer)))

    def _page(self, shape: ConnShape, rows: FromClause, first: Any, *, audit_extra: bool) -> Select[Any]:
        """A connection's ``(j, a)`` over numbered rows, the first ``first`` shown. Each distinct selection of
        ``edges { node }`` (aliases may differ) is a JSON column of its own."""
        shown = rows.c._n <= first
        frm: FromClause = rows
        nodes, audits, own = [], [], None
        for node in _node_shapes(shape) or [RecordShape(shape.coll, ())]:
            frm_node, j, a, own = self.record(node, rows, gate=shown, frm=frm)
            frm = frm_node
            nodes.append((node, j))
            audits.append(a)
        assert own is not None
        cols = [rows.c.id, rows.c._n, own.label("own"), func.concat_ws(literal_column("','"), *audits).label("a")]
        cols += [j.label(f"j{i}") for i, (_, j) in enumerate(nodes)]
        x = select(*cols).select_from(frm).lateral(self.name("x"))
        shown_x = x.c._n <= first
        columns = {node: x.c[f"j{i}"] for i, (node, _) in enumerate(nodes)}
        parts = [(_key(p.key), self._part(p, shape.coll, x, columns, first, shown_x)) for p in shape.parts]
        audit: ColumnElement[Any]
        if audit_extra:
            audit = func.string_agg(case((shown_x, x.c.a), else_=x.c.own), literal_column("','"))
        else:
            audit = func.string_agg(x.c.a, literal_column("','")).filter(shown_x)
        return select(jobj(parts).label("j"), audit.label("a")).select_from(x)

    def _part(self, part: Part, coll_name: str, x: Any, nodes: dict[RecordShape, Any], first: Any,
              shown: Any) -> ColumnElement[Any]:
        own = type_name(REGISTRY[coll_name])
        if part.part == "__typename":
            return _key(f"{own}Connection")
        assert isinstance(part.sub, ConnSub)
        pairs = []
        if part.part == "edges":
            for p in part.sub.parts:
                if p.part == "node":
                    assert isinstance(p.sub, RecordShape)
                    value = nodes[p.sub]
                else:
                    value = record_cursor(x.c.id) if p.part == "cursor" else _key(f"{own}Edge")
                pairs.append((_key(p.key), value))
            return jagg(jobj(pairs), x.c._n, shown)
        for p in part.sub.parts:
            if p.part == "hasNextPage":
                value = and_(func.count() > first, first > literal_column("0", Integer))
            elif p.part == "endCursor":
                last = func.array_agg(aggregate_order_by(x.c.id, x.c._n.desc())).filter(shown)
                value = record_cursor(last[literal_column("1", Integer)])
            else:
                value = _key("PageInfo")
            pairs.append((_key(p.key), value))
        return jobj(pairs)


def _narrow(stmt: Select[Any], coll: Collection, shapes: Sequence[RecordShape]) -> Select[Any]:
    """``stmt`` (rows of ``coll``'s table) selecting only what the shapes read: the id and the client (audit), the
    fields' columns, the columns relations follow; and the SQL-derived fields, computed from the table."""
    table = coll.table
    names = {"id", "id" if coll.name == "clients" else "client_id"}
    for shape in shapes:
        for entry in shape.entries:
            if isinstance(entry, Value) and entry.spec.source in ("column", "ext"):
                names.add("external_ids" if entry.spec.source == "ext" else entry.spec.name)
            elif isinstance(entry, Rel) and entry.relation.kind in ("one", "many"):
                names.add(entry.relation.attr)
    columns = [c for c in table.c if c.name in names]
    return stmt.with_only_columns(*columns, *_derived(coll, shapes))


def _derived(coll: Collection, shapes: Sequence[RecordShape]) -> list[ColumnElement[Any]]:
    """The SQL-derived and computed fields the shapes select, labelled (``o_<name>``, ``c_<name>``), once each."""
    out: dict[str, ColumnElement[Any]] = {}
    for shape in shapes:
        for entry in shape.entries:
            if isinstance(entry, Value) and entry.spec.source == "sql":
                out[f"o_{entry.spec.name}"] = coll.out_sql[entry.spec.name](coll.table)
            elif isinstance(entry, Value) and entry.spec.source == "computed":
                out[f"c_{entry.spec.name}"] = coll.computed[entry.spec.name](coll.table)
    return [expr.label(name) for name, expr in out.items()]


def _node_shapes(shape: ConnShape) -> list[RecordShape]:
    """The distinct record selections of a connection's ``edges { node }`` (one unless aliases differ)."""
    out: list[RecordShape] = []
    for part in shape.parts:
        if part.part == "edges" and isinstance(part.sub, ConnSub):
            for p in part.sub.parts:
                if p.part == "node" and isinstance(p.sub, RecordShape) and p.sub not in out:
                    out.append(p.sub)
    return out


__all__ = ["Builder", "RootShape", "compiled"]
