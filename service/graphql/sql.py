"""A root field's shape as one SQL statement that builds its JSON, nesting with lateral joins, ``json_agg`` and
``json_build_object`` as PostGraphile does, and what the audit trail must note.

Every table is read through the principal-aware ``readable()`` (organization, and patient for a patient token),
under row-level security, like every other read. A page reads ``LIMIT first`` rows in the list order; only a page
whose ``pageInfo { hasNextPage }`` is selected reads one row more, numbered (``row_number()``), to tell whether more
follow, and does not read that row's relations.

The statement also says what the audit trail must note: per resource type the statement may read
(``audit_types``), the ids and the clients of the records it read, each comma-joined, gathered level by level
(``string_agg``). The records shown, and, on a page of children whose ``hasNextPage`` is selected, its extra row,
as the previous implementation noted it. A record not read into the answer is not noted (a page of children
without ``hasNextPage`` reads no extra row: since this statement, none is noted).

The statement returns one row ``(j, i0, c0, i1, c1, ...)``: the JSON text, then each type's ids and clients (null:
none read); an absent record is no row. It is compiled once per shape, dialect and kind of principal
(``CompiledRead``) and run on the unit of work's asyncpg connection.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Literal

from pydantic import AwareDatetime
from sqlalchemy import (
    CTE,
    ColumnElement,
    FromClause,
    Integer,
    LargeBinary,
    Select,
    Text,
    Uuid,
    and_,
    any_,
    bindparam,
    case,
    cast,
    column,
    func,
    literal_column,
    null,
    select,
    true,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSON, aggregate_order_by

from service.audit import service as audit
from service.auth.principal import Principal
from service.collections.registry import REGISTRY, Collection
from service.collections.repository import CompiledRead, after_row, readable, tenant_ok
from service.collections.service import MAX_INCLUDE, list_statement
from service.collections.sqljson import float_json, iso_datetime, record_cursor
from service.graphql.shapes import ConnShape, ConnSub, Const, Mode, NestedShape, Part, RecordShape, Rel, Value
from service.graphql.specs import Spec, type_name

MAX_PAIRS = 50  # json_build_object takes at most 100 arguments

# What a record and the relations under it read, for the audit trail: by type (its index in ``audit_types``), the
# ids and the clients, each a comma-joined text (or null).
Audit = dict[int, tuple[ColumnElement[Any], ColumnElement[Any]]]


@dataclass(frozen=True)
class RootShape:
    """What one root field reads: a record by id, a page, or a record of any readable collection (``node``)."""

    kind: Literal["one", "page", "node"]
    mode: Mode
    shapes: tuple[RecordShape | ConnShape, ...]
    filters: tuple[str, ...] = ()  # page: the filters given (their values are parameters ``f_<name>``)
    after: bool = False  # page: a cursor was given (parameter ``after``)
    first: int = 0  # page: its size, written in the statement (see ``Builder.root``)


@lru_cache(maxsize=512)
def compiled(root: RootShape, audit_rows: bool = False) -> CompiledRead:
    """The root's statement; with ``audit_rows``, the one that also writes the request's audit rows (``audited``)."""
    if audit_rows:
        types = audit_types(root)
        return CompiledRead(lambda who: audited(Builder(who).root(root), types, who))
    return CompiledRead(lambda who: Builder(who).root(root))


def audited(root: Select[Any], types: tuple[str, ...], who: Principal) -> Select[Any]:
    """``root``'s JSON, and in the same statement the request's audit rows: one per type it read, naming the ids and
    the clients of its side channel, each once, in the order first read (as ``AuditTrail`` would list them), with the
    request's values bound as ``a_<name>`` (``AuditTrail.read_values``). The ids go from the read to the INSERT
    without leaving PostgreSQL. The rows are written in the read's transaction (or, on a pinned connection, its own
    statement's): they commit with it or not at all. One row, always: ``ok`` (``tenant_guard``: the session holds the
    principal's tenant; nothing is written otherwise), ``j`` (null when the record is absent) and ``audited``, the
    number of rows written (none when nothing was read)."""
    guard = tenant_ok(who)
    r = root.cte("r").prefix_with("MATERIALIZED")
    count = audit.written_count(_side_channel_rows(who, r, types, select(guard.c.ok).scalar_subquery()))
    return select(guard.c.ok, r.c.j, count.label("audited")).select_from(guard.outerjoin(r, true()))


def _side_channel_rows(who: Principal, r: CTE, types: tuple[str, ...], *where: Any, reads: CTE | None = None) -> CTE:
    """The INSERT of the audit rows of the side channel of ``r`` (a statement's rows, ``i<k>`` and ``c<k>`` per type
    of ``types``): one per type read, naming its ids and its clients, each once, in the order first read
    (``audit.own_rows``). Without ``reads``, the request's (its values bound); with them, one per read of ``reads``
    whose record ``r`` holds live, with that read's values, in the order of the reads."""
    per_read = [] if reads is None else [reads.c.n, *(reads.c[name] for name in audit.READ_VALUES)]

    def of_type(k: int, name: str) -> Select[Any]:
        chosen = select(literal_column(str(k), Integer).label("k"), _key(name).label("resource_type"),
                        r.c[f"i{k}"].label("i"), r.c[f"c{k}"].label("c"), *per_read)
        if reads is None:
            return chosen
        return chosen.select_from(reads.join(r, r.c.id == reads.c.id)).where(r.c.deleted_at.is_(None))

    per_type = union_all(*(of_type(k, name) for k, name in enumerate(types))).subquery("audit_t")
    kept = [c for c in per_type.c if c.key not in ("i", "c")]
    arrays = select(*kept, _distinct_uuids("i").label("resource_ids"), _distinct_uuids("c").label("client_ids")) \
        .where(per_type.c.i.is_not(None), *where).subquery("audit_a")
    return audit.own_rows(who, arrays, per_read=reads is not None)


def _reads() -> CTE:
    """The reads an audited statement by ids carries (``Builder.by_ids``): per read, in order (``n``), its record's id
    (parameter ``ids``) and its audit row's values (``a_<name>``, ``AuditTrail.read_values``), each an array with one
    element per read (``db.PinnedTenants.coalesced`` passes one per read sharing the statement)."""
    arrays = [bindparam("ids", None, type_=ARRAY(Uuid))]
    arrays += [bindparam(f"a_{name}", None, type_=ARRAY(Text)) for name in audit.READ_VALUES]
    columns = [column("id", Uuid), *(column(name, Text) for name in audit.READ_VALUES)]
    unnested = func.unnest(*arrays).table_valued(*columns, with_ordinality="n").render_derived(name="read_values")
    return select(unnested).cte("reads")


def audited_reads(rows: Select[Any], reads: CTE, types: tuple[str, ...], who: Principal) -> Select[Any]:
    """``by_ids``' rows (``rows``, of the records of ``reads``) and, in the same statement, each read's audit rows: one
    per type its record's row read, naming the ids and the clients of the side channel (each once, in the order first
    read), with that read's own values; in the order of the reads, then of the types. Only a live record found is
    recorded here: a read whose record is deleted or missing has no row, and is answered 410 or 404, a refusal the
    trail records once answered. Every row gets ``audited``: how many audit rows the statement wrote, for all the
    reads it carries (none when the session held another tenant: ``by_ids`` then reads nothing)."""
    r = rows.cte("r").prefix_with("MATERIALIZED")
    count = audit.written_count(_side_channel_rows(who, r, types, reads=reads))
    return select(*r.c, count.label("audited"))


def _distinct_uuids(column: str) -> ColumnElement[Any]:
    """The comma-joined ids of ``audit_t.<column>`` as a uuid[], each once, in the order first listed ('{}': none)."""
    return literal_column(
        "ARRAY(SELECT d.u FROM (SELECT x.u, min(x.o) AS o FROM unnest(CAST(string_to_array("
        f"audit_t.{column}, ',') AS uuid[])) WITH ORDINALITY AS x(u, o) GROUP BY x.u) AS d ORDER BY d.o)",
        ARRAY(Uuid))


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


def _utf8(j: ColumnElement[Any]) -> ColumnElement[Any]:
    """The field's JSON as its UTF-8 bytes (bytea): the driver hands them over as they arrive, and the response
    embeds them as they are (``orjson.Fragment``), where text would be decoded to a string and encoded again."""
    return func.convert_to(cast(j, Text), literal_column("'UTF8'"), type_=LargeBinary)


def jagg(value: ColumnElement[Any], order: Sequence[ColumnElement[Any]],
         where: ColumnElement[Any] | None = None) -> ColumnElement[Any]:
    agg = func.json_agg(aggregate_order_by(value, *order))
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
        self.types: tuple[str, ...] = ()

    def name(self, prefix: str) -> str:
        return f"{prefix}{next(self._n)}"

    # ------------------------------------------------------------ roots

    def root(self, root: RootShape) -> Select[Any]:
        self.types = audit_types(root)
        if root.kind == "page":
            shape = root.shapes[0]
            assert isinstance(shape, ConnShape)
            coll = REGISTRY[shape.coll]
            base = self.list_base(coll, root.filters, root.after)
            # The root page's size is written in the SQL, not bound: PostgreSQL then plans the statement once per
            # connection (a generic plan). With ``LIMIT $1`` it cannot tell the page from a tenth of the table, so
            # every execution would be planned anew (custom plans), about a third of the statement's time.
            first = literal_column(str(int(root.first)), Integer)
            extra = _needs_extra(shape)
            rows = self._limited(coll, shape, base, first, extra).subquery(self.name("t"))
            page, audit = self._page(shape, rows, first, extra=extra, audit_extra=False)
            sub = page.subquery(self.name("p"))
            return select(_utf8(sub.c.j).label("j"), *self._audit_columns(sub, audit))
        selects = []
        for shape in root.shapes:
            assert isinstance(shape, RecordShape)
            coll = REGISTRY[shape.coll]
            base = self._readable(coll, [shape]).where(coll.table.c.id == bindparam("id", None, type_=Uuid),
                                                       coll.table.c.deleted_at.is_(None))
            rows = base.subquery(self.name("t"))
            frm, j, audit = self.record(shape, rows)
            selects.append(select(_utf8(j).label("j"), *self._audit_values(audit)).select_from(frm))
        if len(selects) == 1:
            return selects[0]
        union = selects[0].union_all(*selects[1:]).subquery(self.name("u"))
        return select(*union.c).limit(1)

    def list_base(self, coll: Collection, filters: tuple[str, ...], after: bool) -> Select[Any]:
        """The list's readable rows (``service.list_statement``) with the filters named, their values the parameters
        ``page_params`` gives, after the row a cursor names (parameter ``after``) when ``after``."""
        given: dict[str, Any] = {name: bindparam(f"f_{name}", None) for name in filters}
        if "external_id" in given:
            given["external_id"] = (bindparam("f_system", None), bindparam("f_value", None))
        base = list_statement(self.who, coll, filters=given, cursor=None)
        if after:
            base = base.where(after_row(coll, self.who, bindparam("after", None, type_=Uuid)))
        return base

    def by_ids(self, shape: RecordShape, audited: bool = False) -> Select[Any]:
        """Records by id (parameter ``ids``, an array), live or deleted, behind ``tenant_guard`` (REST's read: 404, 410
        and the ETag are told apart from the row; several reads of one tenant answered by one statement,
        ``db.PinnedTenants.coalesced``). A row per record found, at least one: ``(j, i<k>, c<k> ..., ok, version,
        deleted_at, id)``: ``ok`` false when the session holds another tenant (nothing read), an id not found has no
        row (the one row when none is found has ``id`` null), relations read only for a live record. ``audited``:
        ``ids`` is one per read, and the statement also writes each read's audit rows (``audited_reads``)."""
        if audited:
            reads = _reads()
            rows = self._by_ids(shape, lambda record_id: record_id.in_(select(reads.c.id)))
            return audited_reads(rows, reads, self.types, self.who)
        return self._by_ids(shape, lambda record_id: record_id == any_(bindparam("ids", None, type_=ARRAY(Uuid))))

    def _by_ids(self, shape: RecordShape, wanted: Callable[[Any], ColumnElement[bool]]) -> Select[Any]:
        coll = REGISTRY[shape.coll]
        table = coll.table
        guard = tenant_ok(self.who)
        base = self._readable(coll, [shape]).add_columns(
            table.c.version.label("_version"), table.c.deleted_at.label("_deleted_at")).where(
            wanted(table.c.id), select(guard.c.ok).scalar_subquery())
        rows = base.subquery(self.name("t"))
        frm, j, audit = self.record(shape, rows, gate=rows.c._deleted_at.is_(None))
        rec = select(_utf8(j).label("j"), *self._audit_values(audit), rows.c._version, rows.c._deleted_at,
                     rows.c.id.label("_id")).select_from(frm).subquery(self.name("rec"))
        audit_cols = [rec.c[f"{x}{k}"] for k in range(len(self.types)) for x in ("i", "c")]
        return select(rec.c.j, *audit_cols, guard.c.ok, rec.c._version.label("version"),
                      rec.c._deleted_at.label("deleted_at"), rec.c._id.label("id")) \
            .select_from(guard.outerjoin(rec, true()))

    def rest_page(self, shape: RecordShape, base: Select[Any], bucket: int) -> Select[Any]:
        """REST's list page over ``base`` (the list's readable, filtered rows): ``{"data": [...], "next_cursor": ...}``
        of the first ``limit`` rows (parameter) in the list order, reading at most ``bucket`` (written in the SQL,
        for the plan cache; at least ``limit + 1``, to tell whether more follow). Gated on ``tenant_guard``. One row:
        ``(j, i0, c0, ok, next_cursor)``: the cursor of the last row shown when more follow, else null."""
        coll = REGISTRY[shape.coll]
        guard = tenant_ok(self.who)
        ok = select(guard.c.ok).scalar_subquery()
        keys = coll.list_keys()
        limit = bindparam("limit", None, type_=Integer)
        rows = (_narrow(base.where(ok), coll, [shape])
                .add_columns(func.row_number().over(order_by=keys).label("_n"))
                .order_by(None).order_by(*keys).limit(literal_column(str(int(bucket)), Integer))
                .subquery(self.name("t")))
        frm, j, audit = self.record(shape, rows)
        x = select(rows.c.id, rows.c._n, j.label("j"), *self._labelled(audit)).select_from(frm).subquery(self.name("x"))
        shown = x.c._n <= limit
        ids = func.array_agg(aggregate_order_by(x.c.id, x.c._n)).filter(shown)
        next_cursor = case((func.count() > limit, record_cursor(ids[limit])), else_=null())
        page = jobj([(_key("data"), jagg(x.c.j, [x.c._n], shown)), (_key("next_cursor"), next_cursor)])
        return select(_utf8(page).label("j"), *self._audit_values(self._aggregated(x, audit, shown)),
                      ok.label("ok"), next_cursor.label("next_cursor")).select_from(x)

    # ------------------------------------------------------------ the audit side channel

    def _audit_values(self, audit: Audit) -> list[ColumnElement[Any]]:
        """Every resource type's ids and clients (null where the shape reads none), as the root's columns."""
        out: list[ColumnElement[Any]] = []
        for k in range(len(self.types)):
            ids, clients = audit.get(k, (None, None))
            out.append((cast(null(), Text) if ids is None else ids).label(f"i{k}"))
            out.append((cast(null(), Text) if clients is None else clients).label(f"c{k}"))
        return out

    def _audit_columns(self, frm: FromClause, audit: Audit) -> list[ColumnElement[Any]]:
        return self._audit_values({k: (frm.c[f"i{k}"], frm.c[f"c{k}"]) for k in audit})

    @staticmethod
    def _labelled(audit: Audit) -> list[ColumnElement[Any]]:
        return [c for k, (ids, clients) in audit.items() for c in (ids.label(f"i{k}"), clients.label(f"c{k}"))]

    @staticmethod
    def _aggregated(frm: FromClause, audit: Audit, where: ColumnElement[Any] | None = None) -> Audit:
        """Each type's ids and clients over the rows of ``frm``, joined (``where``: only those rows)."""
        def agg(column: ColumnElement[Any]) -> ColumnElement[Any]:
            joined = func.string_agg(column, literal_column("','"))
            return joined if where is None else joined.filter(where)

        return {k: (agg(frm.c[f"i{k}"]), agg(frm.c[f"c{k}"])) for k in audit}

    # ------------------------------------------------------------ records

    def _readable(self, coll: Collection, shapes: Sequence[RecordShape]) -> Select[Any]:
        """The collection's rows as the principal may read them: the columns the shapes read (narrow rows through
        the sorts and joins), with the SQL-derived fields they select."""
        return _narrow(readable(coll.table, self.who), coll, shapes)

    def record(self, shape: RecordShape, rows: FromClause, gate: ColumnElement[Any] | None = None,
               frm: FromClause | None = None) -> tuple[FromClause, ColumnElement[Any], Audit]:
        """(FROM with the relations' lateral joins, the record's JSON, the ids and clients it and its relations read,
        by type). ``gate``: relations are read only where it holds (a page's extra row has none)."""
        coll = REGISTRY[shape.coll]
        frm = rows if frm is None else frm
        pairs: list[tuple[ColumnElement[Any], ColumnElement[Any]]] = []
        parts: dict[int, tuple[list[ColumnElement[Any]], list[ColumnElement[Any]]]] = {
            self.types.index(coll.resource): ([cast(rows.c.id, Text)], [cast(rows.c[coll.owner_column], Text)])}
        for entry in shape.entries:
            if isinstance(entry, Const):
                pairs.append((_key(entry.key), _const(entry.value)))
            elif isinstance(entry, Value):
                pairs.append((_key(entry.key), self.value(coll, entry, rows)))
            else:
                lateral, keys = self.relation(entry, rows, gate)
                frm = frm.outerjoin(lateral, true())
                key = bindparam(entry.key, None, type_=Text) if entry.key_is_param else _key(entry.key)
                pairs.append((key, lateral.c.j))
                for k in keys:
                    ids, clients = parts.setdefault(k, ([], []))
                    ids.append(lateral.c[f"i{k}"])
                    clients.append(lateral.c[f"c{k}"])
        return frm, jobj(pairs), {k: (_joined(ids), _joined(clients)) for k, (ids, clients) in parts.items()}

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
            return select(jagg(obj, [elements.c.o])).select_from(elements).scalar_subquery()
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

    def relation(self, rel: Rel, parent: FromClause, gate: ColumnElement[Any] | None,
                 ) -> tuple[FromClause, list[int]]:
        """The relation's lateral ``(j, i<k>, c<k> ...)`` and the types ``k`` whose ids it reads."""
        relation, target = rel.relation, rel.relation.target
        table = target.table
        open_ = table.c.deleted_at.is_(None) if gate is None else and_(table.c.deleted_at.is_(None), gate)
        if relation.kind == "children" and isinstance(rel.shape, RecordShape):
            return self._list(rel.shape, target, parent, relation.attr, open_)
        if relation.kind == "children":
            assert isinstance(rel.shape, ConnShape)
            assert rel.first is not None
            first = bindparam(rel.first, None, type_=Integer)
            base = readable(table, self.who).where(table.c[relation.attr] == parent.c.id, open_).correlate(parent)
            if rel.after is not None:
                base = base.where(after_row(target, self.who, bindparam(rel.after, None, type_=Uuid)))
            extra = _needs_extra(rel.shape)
            rows = self._limited(target, rel.shape, base, first, extra).lateral(self.name("t"))
            page, audit = self._page(rel.shape, rows, first, extra=extra, audit_extra=True)
            return page.lateral(self.name("r")), list(audit)
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
        frm, j, audit = self.record(rel.shape, rows)
        return select(j.label("j"), *self._labelled(audit)).select_from(frm).lateral(self.name("r")), list(audit)

    def _many(self, shape: RecordShape, target: Collection, parent: FromClause, ids: ColumnElement[Any],
              open_: ColumnElement[Any]) -> tuple[FromClause, list[int]]:
        """The records a list of ids names, in its order (repeats included), those the principal may read."""
        listed = func.unnest(ids).table_valued("id", with_ordinality="o").render_derived(name=self.name("u"))
        table = target.table
        rows = self._readable(target, [shape]).where(open_, table.c.id == listed.c.id).add_columns(
            listed.c.o.label("_o")).correlate(parent).lateral(self.name("t"))
        return self._in_order(shape, rows)

    def _list(self, shape: RecordShape, target: Collection, parent: FromClause, attr: str,
              open_: ColumnElement[Any]) -> tuple[FromClause, list[int]]:
        """Every child of the parent as a plain list, in the child's list order, at most ``MAX_INCLUDE`` (REST's
        ``?include=``; GraphQL reads children as pages)."""
        table = target.table
        keys = target.list_keys()
        rows = (self._readable(target, [shape]).where(table.c[attr] == parent.c.id, open_)
                .add_columns(func.row_number().over(order_by=keys).label("_o"))
                .order_by(*keys).limit(literal_column(str(MAX_INCLUDE), Integer))
                .correlate(parent).lateral(self.name("t")))
        return self._in_order(shape, rows)

    def _in_order(self, shape: RecordShape, rows: FromClause) -> tuple[FromClause, list[int]]:
        """A JSON list of the records ``rows`` holds, in the order of their ``_o``, and the types whose ids it reads."""
        frm, j, audit = self.record(shape, rows)
        inner = select(j.label("j"), *self._labelled(audit), rows.c._o).select_from(frm).lateral(self.name("x"))
        outer = select(jagg(inner.c.j, [inner.c._o]).label("j"), *self._labelled(self._aggregated(inner, audit)))
        return outer.lateral(self.name("r")), list(audit)

    # ------------------------------------------------------------ pages

    def _limited(self, coll: Collection, shape: ConnShape, base: Select[Any], first: Any, extra: bool) -> Select[Any]:
        """Up to ``first`` rows in the collection's list order, its keys selected (``_k<i>``, then the id: edges and
        the end cursor follow them). ``extra``: one row more, which tells whether more follow (``hasNextPage``),
        the rows numbered in that order (``_n``: the first ``first`` are shown)."""
        keys = coll.list_keys()
        stmt = _narrow(base, coll, _node_shapes(shape)).add_columns(
            *(key.label(f"_k{i}") for i, key in enumerate(keys[:-1])))
        if extra:
            stmt = stmt.add_columns(func.row_number().over(order_by=keys).label("_n"))
        return stmt.order_by(None).order_by(*keys).limit(first + literal_column("1", Integer) if extra else first)

    def _page(self, shape: ConnShape, rows: FromClause, first: Any, *, extra: bool,
              audit_extra: bool) -> tuple[Select[Any], Audit]:
        """A connection's ``(j, i<k>, c<k> ...)`` over its rows, the first ``first`` shown (``extra``: the rows are
        numbered, one more was read). Each distinct selection of ``edges { node }`` (aliases may differ) is a JSON
        column of its own. ``audit_extra``: the extra row is audited (its own id, not its relations, never read)."""
        coll = REGISTRY[shape.coll]
        shown = rows.c._n <= first if extra else None
        frm: FromClause = rows
        nodes: list[tuple[RecordShape, ColumnElement[Any]]] = []
        parts: dict[int, tuple[list[ColumnElement[Any]], list[ColumnElement[Any]]]] = {}
        for node in _node_shapes(shape) or [RecordShape(shape.coll, ())]:
            frm, j, node_audit = self.record(node, rows, gate=shown, frm=frm)
            nodes.append((node, j))
            for k, (ids, clients) in node_audit.items():
                parts.setdefault(k, ([], []))[0].append(ids)
                parts[k][1].append(clients)
        audit = {k: (_joined(ids), _joined(clients)) for k, (ids, clients) in parts.items()}
        order_cols = [*(rows.c[f"_k{i}"] for i in range(len(coll.list_keys()) - 1)), rows.c.id]
        own = self.types.index(coll.resource)
        extra_cols = []
        if extra and audit_extra:
            extra_cols = [cast(rows.c.id, Text).label("own_i"), cast(rows.c[coll.owner_column], Text).label("own_c")]
        keys = {c.name: c for c in [rows.c.id, *order_cols, *([rows.c._n] if extra else [])]}
        cols = [*keys.values(), *extra_cols, *self._labelled(audit)]
        cols += [j.label(f"j{i}") for i, (_, j) in enumerate(nodes)]
        x = select(*cols).select_from(frm).lateral(self.name("x"))
        order = [x.c[c.name] for c in order_cols]
        shown_x = x.c._n <= first if extra else None
        columns = {node: x.c[f"j{i}"] for i, (node, _) in enumerate(nodes)}
        pairs = [(_key(p.key), self._part(p, shape.coll, x, columns, first, order, shown_x)) for p in shape.parts]
        aggregated: Audit
        if extra and audit_extra:
            assert shown_x is not None

            def shown_or_own(k: int, col: str) -> ColumnElement[Any]:
                return func.string_agg(case((shown_x, x.c[f"{col}{k}"]),
                                            else_=x.c[f"own_{col}"] if k == own else null()), literal_column("','"))

            aggregated = {k: (shown_or_own(k, "i"), shown_or_own(k, "c")) for k in audit}
        else:
            aggregated = self._aggregated(x, audit, shown_x)
        return select(jobj(pairs).label("j"), *self._labelled(aggregated)).select_from(x), aggregated

    def _part(self, part: Part, coll_name: str, x: Any, nodes: dict[RecordShape, Any], first: Any,
              order: list[ColumnElement[Any]], shown: Any) -> ColumnElement[Any]:
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
            return jagg(jobj(pairs), order, shown)
        for p in part.sub.parts:
            if p.part == "hasNextPage":
                value = and_(func.count() > first, first > literal_column("0", Integer))
            elif p.part == "endCursor":
                ids: ColumnElement[Any] = func.array_agg(aggregate_order_by(x.c.id, *order))  # as the edges
                if shown is not None:
                    ids = ids.filter(shown)
                value = record_cursor(ids[func.cardinality(ids)])
            else:
                value = _key("PageInfo")
            pairs.append((_key(p.key), value))
        return jobj(pairs)


def page_params(filters: dict[str, Any], after: Any) -> dict[str, Any]:
    """The parameters of ``Builder.list_base``'s statement: each filter's value (an external id split in two), and the
    cursor's record id."""
    params: dict[str, Any] = {"after": after} if after is not None else {}
    for name, value in filters.items():
        if name == "external_id":
            params["f_system"], params["f_value"] = value
        else:
            params[f"f_{name}"] = value
    return params


def _joined(texts: list[ColumnElement[Any]]) -> ColumnElement[Any]:
    """Comma-joined texts, null when none is there (``string_agg`` skips it: no empty entry)."""
    if len(texts) == 1:
        return texts[0]
    return func.nullif(func.concat_ws(literal_column("','"), *texts), literal_column("''"))


def _needs_extra(shape: ConnShape) -> bool:
    """Whether the page must read one row more than it shows: only to tell ``hasNextPage``."""
    return any(part.part == "pageInfo" and isinstance(part.sub, ConnSub)
               and any(p.part == "hasNextPage" for p in part.sub.parts) for part in shape.parts)


@lru_cache(maxsize=512)
def audit_types(root: RootShape) -> tuple[str, ...]:
    """The resource types a root field's statement may read, in the order its columns ``i<k>, c<k>`` (the ids and
    the clients of type ``k``, comma-joined) follow ``j``: depth first, as the shape names them."""
    out: dict[str, None] = {}

    def record(shape: RecordShape) -> None:
        out.setdefault(REGISTRY[shape.coll].resource, None)
        for entry in shape.entries:
            if isinstance(entry, Rel):
                connection(entry.shape) if isinstance(entry.shape, ConnShape) else record(entry.shape)

    def connection(shape: ConnShape) -> None:
        for node in _node_shapes(shape) or [RecordShape(shape.coll, ())]:
            record(node)

    for shape in root.shapes:
        connection(shape) if isinstance(shape, ConnShape) else record(shape)
    return tuple(out)


def _narrow(stmt: Select[Any], coll: Collection, shapes: Sequence[RecordShape]) -> Select[Any]:
    """``stmt`` (rows of ``coll``'s table) selecting only what the shapes read: the id and the client (audit), the
    fields' columns, the columns relations follow; and the SQL-derived fields, computed from the table."""
    table = coll.table
    names = {"id", coll.owner_column}
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
