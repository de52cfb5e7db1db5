"""The bench caseload, written fast with COPY as the owner role, in one transaction.

Per client (issue 14's size): 5 strengths, 3 goals each with 4 milestones, 3 outcome markers (PHQ-9, GAD-7 and
a weekly frequency) and 100 measurements, plus what the service itself would have written for each record:
``version`` 1, the external-id index for identifiers, one ``history`` version and one ``changes`` entry.
Values are deterministic (a seeded RNG). No measurement crosses a safety threshold (no PHQ-9 item 9, no
severe total), so no safety alert is owed.

A seed is an organization named ``bench:<clients>c:v<SEED_VERSION>``; it is committed all at once or not at
all, so finding it means it is complete, and it is reused by later runs.

``bench.run`` starts every run from the same data: the database as it was right after seeding, kept as a template
database (``TEMPLATE``, ``keep``) and copied back over the service's database at the start of each run (``restore``).
What earlier runs wrote (W3's batches, W1's audit rows, apps, W7's organizations) would otherwise stay, and W3's
ratio moved with its caseload's size (bench/JOURNAL.md, twenty-third round). The template is made again, from a
fresh database, when it is missing or was made for another size, seed version or migration head (``seed_key``).
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import orjson

from service.ops.embedded import DATABASE, OWNER_ROLE
from service.ops.migrate import head_revision

SEED_VERSION = 1
TEMPLATE = f"{DATABASE}_bench_seed"  # the service's database right after seeding (``keep``)
STRENGTHS, GOALS, MILESTONES, MARKERS, MEASUREMENTS = 5, 3, 4, 3, 100
DOMAINS = ["personal", "relational", "community", "cultural", "spiritual", "practical"]
KINDS = ["skill", "value", "character", "external_support"]
SOURCES = ["client_report", "clinician_observation", "via_inventory", "cliftonstrengths", "collateral"]
LABELS = ["Humour", "Persistence", "Caring for others", "Curiosity", "Faith community", "Cooking", "Running",
          "Organising", "Honesty", "Music"]
MILESTONE_STATUS = ["done", "done", "in_progress", "planned"]


@dataclass
class Seed:
    org_id: uuid.UUID
    client_ids: list[uuid.UUID]
    created: bool
    seconds: float


def org_name(clients: int, purpose: str = "") -> str:
    return f"bench:{clients}c:v{SEED_VERSION}" + (f":{purpose}" if purpose else "")


async def ensure_seed(owner_dsn: str, clients: int, purpose: str = "") -> Seed:
    """The seeded organization for this size (and purpose: a caseload of its own for a workload that writes into
    one, ``Workload.caseload``), seeding it first if it does not exist."""
    t0 = time.perf_counter()
    conn = await asyncpg.connect(owner_dsn)
    try:
        name = org_name(clients, purpose)
        org_id = await conn.fetchval("SELECT id FROM organizations WHERE name = $1", name)
        created = org_id is None
        if created:
            org_id = uuid.uuid4()
            async with conn.transaction():
                await conn.execute("INSERT INTO organizations (id, name) VALUES ($1, $2)", org_id, name)
                await _seed(conn, org_id, clients)
            await conn.execute("ANALYZE")
        ids = [r["id"] for r in await conn.fetch(
            "SELECT id FROM clients WHERE org_id = $1 AND deleted_at IS NULL ORDER BY id", org_id)]
    finally:
        await conn.close()
    return Seed(org_id=org_id, client_ids=ids, created=created, seconds=time.perf_counter() - t0)


def seed_key(clients: int) -> str:
    """What a template was made for: the caseloads' size, the seed's version and the schema's migration head."""
    return f"clients={clients} seed=v{SEED_VERSION} migrations={head_revision()}"


@asynccontextmanager
async def _maintenance(superuser_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A superuser's connection to the server's maintenance database, from which databases are dropped and made."""
    conn = await asyncpg.connect(superuser_dsn, database="postgres")
    try:
        yield conn
    finally:
        await conn.close()


async def restore(superuser_dsn: str, key: str) -> bool:
    """The service's database replaced by a copy of the template made for ``key`` (True), or left as it is when there
    is none (False). Connections to it are closed first (``FORCE``): nothing else may use the data folder meanwhile."""
    async with _maintenance(superuser_dsn) as conn:
        made_for = await conn.fetchval(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1", TEMPLATE)
        if made_for != key:
            return False
        await _replace(conn, f"TEMPLATE {TEMPLATE} OWNER {OWNER_ROLE} STRATEGY FILE_COPY")
        return True


async def empty(superuser_dsn: str) -> None:
    """The service's database dropped and made again, empty (for a fresh seed; the caller runs the migrations)."""
    async with _maintenance(superuser_dsn) as conn:
        await _replace(conn, f"OWNER {OWNER_ROLE}")


async def _replace(conn: asyncpg.Connection, made: str) -> None:
    """The service's database dropped (its sessions ended: ``FORCE``) and created again ``made`` so."""
    await conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    await conn.execute(f"CREATE DATABASE {DATABASE} {made}")


async def keep(superuser_dsn: str, key: str) -> None:
    """The service's database, as it is now (just seeded), kept as the template for ``key``."""
    async with _maintenance(superuser_dsn) as conn:
        await conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE}")
        await conn.execute(f"CREATE DATABASE {TEMPLATE} TEMPLATE {DATABASE} OWNER {OWNER_ROLE} STRATEGY FILE_COPY")
        quoted = key.replace("'", "''")
        await conn.execute(f"COMMENT ON DATABASE {TEMPLATE} IS '{quoted}'")


async def measurement_count(dsn: str, org_id: Any) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM measurements WHERE org_id = $1", org_id))
    finally:
        await conn.close()


async def frequency_markers(dsn: str, org_id: Any) -> dict[Any, Any]:
    """Each seeded client's frequency marker (W3 writes measurements of it: 0..14 per week, no risk items)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT client_id, id FROM outcome_markers WHERE org_id = $1 AND kind = 'frequency' "
                                "AND deleted_at IS NULL", org_id)
        return {r["client_id"]: r["id"] for r in rows}
    finally:
        await conn.close()


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _items(rng: random.Random, n: int, max_total: int) -> list[int]:
    """Item responses 0-3 whose total stays below ``max_total``; the last item of a PHQ-9 stays 0."""
    while True:
        items = [rng.randint(0, 2) for _ in range(n)]
        if n == 9:
            items[8] = 0
        if sum(items) < max_total:
            return items


async def _seed(conn: asyncpg.Connection, org: uuid.UUID, n_clients: int) -> None:
    rng = random.Random(20260601 + n_clients)
    now = datetime.now(UTC).replace(microsecond=0)
    today = now.date()
    rows: dict[str, list[tuple[Any, ...]]] = {t: [] for t in (
        "clients", "strengths", "goals", "milestones", "outcome_markers", "measurements", "external_ids")}
    for c in range(n_clients):
        cid = _uuid(rng)
        mrn = [{"system": "urn:bench:mrn", "value": f"MRN{c:06d}"}]
        rows["clients"].append((
            org, cid, orjson.dumps(mrn).decode(), f"Client {c:05d}", date(1960 + c % 45, 1 + c % 12, 1 + c % 28),
            "en", "active", "Back at work, walking the dog every morning, seeing friends on Fridays.",
        ))
        rows["external_ids"].append((org, "clients", "urn:bench:mrn", f"MRN{c:06d}", cid, cid))
        strength_ids = []
        for s in range(STRENGTHS):
            sid = _uuid(rng)
            strength_ids.append(sid)
            label = LABELS[(c + s) % len(LABELS)]
            rows["strengths"].append((
                org, sid, cid, DOMAINS[s % len(DOMAINS)], KINDS[s % len(KINDS)], label, f"my {label.lower()}",
                f"Uses {label.lower()} to get through a hard week", "at home and at work", s % 2 == 0,
                SOURCES[s % len(SOURCES)], "confirmed", [f"Used {label.lower()} when the bus was late"],
            ))
        goal_ids = [_uuid(rng) for _ in range(GOALS)]
        marker_ids = [_uuid(rng) for _ in range(MARKERS)]
        markers = [
            ("instrument", "PHQ-9", "{score}", "44261-6", "phq9", 0.0, 27.0, "lower_is_better"),
            ("instrument", "GAD-7", "{score}", "70274-6", "gad7", 0.0, 21.0, "lower_is_better"),
            ("frequency", "Walks with the dog", "/wk", None, None, 0.0, 14.0, "higher_is_better"),
        ]
        start = today - timedelta(days=7 * 40)
        for g in range(GOALS):
            target = {"marker_id": str(marker_ids[g]), "comparator": "<=" if g < 2 else ">=",
                      "value": 9.0 if g < 2 else 5.0, "period": "P1W", "duration": "P4W"}
            rows["goals"].append((
                org, goal_ids[g], cid, f"Goal {g + 1}: do more of what works, three times a week",
                [strength_ids[g], strength_ids[(g + 1) % STRENGTHS]], orjson.dumps(target).decode(), "active",
                "in_progress", start, today + timedelta(days=90), ["time", "energy"],
            ))
            for m in range(MILESTONES):
                status = MILESTONE_STATUS[m]
                rows["milestones"].append((
                    org, _uuid(rng), cid, goal_ids[g], f"Step {m + 1}", f"Observable: step {m + 1} done twice",
                    m + 1, status, start + timedelta(days=30 * (m + 1)),
                    now - timedelta(days=10 * (4 - m)) if status == "done" else None,
                ))
        for k, (kind, name, unit, code, instrument, lo, hi, direction) in enumerate(markers):
            rows["outcome_markers"].append((org, marker_ids[k], cid, kind, name, unit, code, instrument, lo, hi,
                                            direction, goal_ids[k]))
        for j in range(MEASUREMENTS):
            k = j % MARKERS
            observed = now - timedelta(days=3 * (MEASUREMENTS - j), hours=rng.randint(0, 12))
            if k == 0:
                items: list[int] | None = _items(rng, 9, 20)
            elif k == 1:
                items = _items(rng, 7, 15)
            else:
                items = None
            value = float(sum(items)) if items is not None else float(rng.randint(0, 7))
            rows["measurements"].append((org, _uuid(rng), cid, marker_ids[k], value, items, observed, 0,
                                         "urn:bench:app", f"{c}-{j}", None))
    columns = {
        "clients": ("org_id", "id", "external_ids", "display_name", "birth_date", "preferred_language", "status",
                    "preferred_future"),
        "strengths": ("org_id", "id", "client_id", "domain", "kind", "label", "client_label", "description",
                      "context", "under_stress", "source", "status", "evidence"),
        "goals": ("org_id", "id", "client_id", "description", "strength_ids", "target", "lifecycle", "achievement",
                  "start_date", "target_date", "barriers"),
        "milestones": ("org_id", "id", "client_id", "goal_id", "title", "completion_criteria", "sequence", "status",
                       "due_date", "completed_at"),
        "outcome_markers": ("org_id", "id", "client_id", "kind", "name", "unit", "code", "instrument", "min", "max",
                            "direction", "goal_id"),
        "measurements": ("org_id", "id", "client_id", "marker_id", "value", "items", "observed_at",
                         "observed_offset", "source", "external_id", "note"),
        "external_ids": ("org_id", "collection", "system", "value", "record_id", "client_id"),
    }
    # binary COPY: jsonb is a version byte (1) and the JSON text
    await conn.set_type_codec("jsonb", encoder=lambda v: b"\x01" + v.encode(), decoder=lambda v: v[1:].decode(),
                              schema="pg_catalog", format="binary")
    for table in ("clients", "strengths", "goals", "milestones", "outcome_markers", "measurements", "external_ids"):
        await conn.copy_records_to_table(table, records=rows[table], columns=columns[table])
    await _trails(conn, org)


# What record_change() writes for a create: a history version (the API's snapshot of the record) and a
# change-feed entry, in the service's collection names; built server-side from the rows just copied.
TRAIL_TABLES = {
    "clients": "clients", "strengths": "strengths", "goals": "goals", "milestones": "milestones",
    "outcome_markers": "outcome-markers", "measurements": "measurements",
}


async def _trails(conn: asyncpg.Connection, org: uuid.UUID) -> None:
    for table, collection in TRAIL_TABLES.items():
        client_col = "t.id" if table == "clients" else "t.client_id"
        snapshot = "to_jsonb(t) - 'org_id'"
        if table == "clients":
            snapshot = f"({snapshot} - 'external_ids') || jsonb_build_object('identifiers', t.external_ids)"
        if table == "measurements":
            snapshot = f"{snapshot} - 'observed_offset'"
        await conn.execute(
            f"""INSERT INTO history (org_id, collection, record_id, version, client_id, action, data, changed_by,
                                     changed_at)
                SELECT t.org_id, $2, t.id, t.version, {client_col}, 'created', {snapshot}, 'bench-seed', t.created_at
                FROM {table} t WHERE t.org_id = $1""",
            org, collection,
        )
        await conn.execute(
            f"""INSERT INTO changes (org_id, collection, record_id, client_id, action, version, changed_at)
                SELECT t.org_id, $2, t.id, {client_col}, 'created', t.version, t.created_at
                FROM {table} t WHERE t.org_id = $1 ORDER BY t.id""",
            org, collection,
        )
