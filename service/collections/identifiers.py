"""Identifiers that name records for sync (external ids, a client's identifiers, a measurement's source and
external id), and what a patient-context token may do with them (CONTRACT.md section 2).

No answer may let a patient token tell another patient's identifiers from unknown ones. So identifiers live in
*compartments*: one written with a patient token lives in that patient's compartment (the client's id), one
written by any other token in the organization's (``ORG_WIDE``); uniqueness holds per compartment. For a write
about client C, an identifier names the record holding it in the organization's compartment or in C's, C's
own records first, then the organization's compartment (another client's record is named only when C has
none, and a write about C then meets it as before: ``client_id_immutable``, a ``duplicate``, a 409). Row-level
security hides other patients' rows from a patient token, so to it another patient's identifier is an unknown
one, and its record is stored in its own compartment. Among clinicians' and EHRs' writes identifiers stay
unique per organization, as before.

Records that *are* patients (clients, ``Collection.identity``) are never created by a patient token, nor are
their identifiers changed by one: 403, whatever the identifiers are.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import Select, false, or_, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from service.auth.principal import Principal
from service.collections.registry import Collection
from service.collections.repository import readable
from service.errors import Conflict, PatientCannotChangeIdentifiers, PatientCannotCreate, field_error
from service.models import ExternalId
from service.models.base import ORG_WIDE

__all__ = ["ORG_WIDE", "check_identity_create", "check_identity_update", "claim", "compartment", "held_elsewhere",
           "lookup",
           "natural_key_holder", "natural_key_statement",
           "write_external_ids"]


def compartment(who: Principal) -> UUID:
    """Where identifiers ``who`` writes live (also for a ``CompiledRead``'s principal, whose patient is a parameter)."""
    return who.patient_id if who.patient_id is not None else ORG_WIDE


def check_identity_create(who: Principal, coll: Collection) -> None:
    if coll.identity and who.patient_id is not None:
        raise PatientCannotCreate(f"A patient-context token cannot create {coll.title.lower()}")


def check_identity_update(who: Principal, coll: Collection, current: dict[str, Any], new_ids: Any) -> None:
    """A patient token may send a client's identifiers back unchanged, never change them."""
    if coll.identity and who.patient_id is not None and new_ids is not None \
            and list(new_ids) != list(current.get("external_ids") or []):
        raise PatientCannotChangeIdentifiers(f"A patient-context token cannot change {coll.ext_field}")


# ---------------------------------------------------------------- the external_ids index

_LOOKUP = text(
    "SELECT record_id FROM external_ids WHERE org_id = :org AND collection = :collection AND system = :system "
    "AND value = :value AND compartment IN (CAST(:org_wide AS uuid), CAST(:client AS uuid)) "
    "ORDER BY client_id IS NOT DISTINCT FROM CAST(:client AS uuid) DESC, compartment = CAST(:org_wide AS uuid) DESC "
    "LIMIT 1"
)
# Claims (system, value) for record_id in the writer's compartment, unless another record holds it there or in
# the other compartment this client's records see (``elsewhere``): true when the identifier is now the record's.
_CLAIM = text("""
WITH elsewhere AS (
  SELECT 1 FROM external_ids WHERE org_id = :org AND collection = :collection AND system = :system AND value = :value
    AND compartment IN (CAST(:org_wide AS uuid), CAST(:client AS uuid)) AND compartment <> CAST(:compartment AS uuid)
    AND record_id <> :record_id
  LIMIT 1
), claimed AS (
  INSERT INTO external_ids (org_id, collection, system, value, compartment, record_id, client_id)
  SELECT :org, :collection, :system, :value, :compartment, :record_id, :client_id
  WHERE NOT EXISTS (SELECT FROM elsewhere)
  ON CONFLICT (org_id, collection, system, value, compartment) DO UPDATE SET record_id = EXCLUDED.record_id
    WHERE external_ids.record_id = EXCLUDED.record_id
  RETURNING 1
)
SELECT EXISTS (SELECT FROM claimed)
""")


def _params(who: Principal, coll: Collection, client: UUID | None, system: str, value: str) -> dict[str, Any]:
    return {"org": who.org_id, "collection": coll.name, "system": system, "value": value,
            "org_wide": ORG_WIDE, "client": client or ORG_WIDE}


async def lookup(conn: AsyncConnection, who: Principal, coll: Collection, client: UUID | None, system: str,
                 value: str) -> UUID | None:
    """The record ``system|value`` names for a write about ``client`` (None: no client, as for clients)."""
    found = await conn.execute(_LOOKUP, _params(who, coll, client, system, value))
    return found.scalar()


async def claim(conn: AsyncConnection, who: Principal, coll: Collection, record_id: UUID, client_id: UUID | None,
                system: str, value: str, *, only_new: bool = False) -> bool:
    """Make ``system|value`` name ``record_id`` (of ``client_id``) in the writer's compartment. False when
    another record holds it where this client's records see it. ``only_new``: false also when this record
    already holds it (a claim racing another for a new record)."""
    params = {**_params(who, coll, client_id if not coll.identity else None, system, value),
              "compartment": compartment(who), "record_id": record_id, "client_id": client_id}
    stmt = _CLAIM if not only_new else _CLAIM_NEW
    return bool((await conn.execute(stmt, params)).scalar())


_CLAIM_NEW = text(
    "INSERT INTO external_ids (org_id, collection, system, value, compartment, record_id, client_id) "
    "VALUES (:org, :collection, :system, :value, :compartment, :record_id, :client_id) "
    "ON CONFLICT DO NOTHING RETURNING true"
)


async def write_external_ids(
    conn: AsyncConnection, who: Principal, coll: Collection, record_id: UUID, client_id: UUID | None,
    ids: list[dict[str, str]], *, replace: bool,
) -> None:
    """The record's identifiers become ``ids``: those it already holds stay where they are, new ones are claimed
    in the writer's compartment (service.collections.identifiers); one another record holds is a 409."""
    ext = ExternalId.__table__
    held: set[tuple[str, str]] = set()
    if replace:
        mine = ext.c.org_id == who.org_id, ext.c.collection == coll.name, ext.c.record_id == record_id
        held = {(r.system, r.value) for r in await conn.execute(select(ext.c.system, ext.c.value).where(*mine))}
        wanted = {(i["system"], i["value"]) for i in ids}
        dropped = held - wanted
        if dropped:
            await conn.execute(ext.delete().where(*mine, tuple_(ext.c.system, ext.c.value).in_(dropped)))
    for i, ident in enumerate(ids):
        if (ident["system"], ident["value"]) in held:
            continue
        if not await claim(conn, who, coll, record_id, client_id, ident["system"], ident["value"]):
            raise Conflict(
                f"The identifier {ident['system']}|{ident['value']} already names another {coll.type_name}",
                errors=[field_error(f"{coll.ext_field}.{i}", "identifier already in use", "identifier_in_use")],
            )


# ---------------------------------------------------------------- a collection's natural key (measurements)

def natural_key_statement(who: Principal, coll: Collection, client: Any, key: dict[str, Any]) -> Select[Any]:
    """The live or deleted records whose natural key is ``key``, as a write about ``client`` sees them: in the
    organization's compartment or the client's; the client's own records first, the organization's first."""
    table = coll.table
    stmt = readable(table, who).where(*(table.c[name] == key[name] for name in coll.natural_key))
    stmt = stmt.where(or_(table.c.compartment == ORG_WIDE, table.c.compartment == client if client else false()))
    return stmt.order_by((table.c.client_id == client).desc() if client else table.c.id,
                         (table.c.compartment == ORG_WIDE).desc()).limit(1)


async def natural_key_holder(conn: AsyncConnection, who: Principal, coll: Collection, values: dict[str, Any],
                             record_id: Any = None) -> Any:
    """Another record holding the natural key ``values`` name, in a compartment other than the writer's (the
    unique index guards the writer's own), or None."""
    key = {name: values.get(name) for name in coll.natural_key}
    if not coll.natural_key or any(v is None for v in key.values()):
        return None
    table = coll.table
    stmt = natural_key_statement(who, coll, values.get("client_id"), key).where(
        table.c.compartment != compartment(who))
    if record_id is not None:
        stmt = stmt.where(table.c.id != record_id)
    return (await conn.execute(stmt.with_only_columns(table.c.id))).scalar()


def held_elsewhere(coll: Collection, keys: str) -> str:
    """For a row ``keys`` (an SQL alias with ``client_id`` and the natural key's columns), the record holding that key
    in a compartment other than the writer's where the client's records see it, as a scalar subquery over the
    parameters ``:org_id``, ``:compartment`` (``compartment(who)``) and ``:org_wide`` (``ORG_WIDE``):
    ``natural_key_holder`` for many rows at once, a part of the statement that writes them (the writer's own
    compartment is left to the unique index). One at most: besides the writer's, the organization's compartment
    and the client's own are the only ones the client's records see, and one of them is the writer's. The holder
    is a record of the row's client, as ``natural_key_holder`` finds it through ``readable()`` (a patient token's
    patient's records; for any other writer the client's compartment holds that client's records only), stated
    here rather than left to row-level security."""
    table = coll.table.name
    same = " AND ".join(f"h.{name} = {keys}.{name}" for name in coll.natural_key)
    return (f"(SELECT h.id FROM {table} AS h WHERE h.org_id = :org_id AND {same} AND h.client_id = {keys}.client_id "
            f"AND h.compartment <> CAST(:compartment AS uuid) "
            f"AND (h.compartment = CAST(:org_wide AS uuid) OR h.compartment = {keys}.client_id) LIMIT 1)")
