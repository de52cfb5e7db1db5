"""A batch-created measurement's first version is the record itself until it is superseded

A batch of measurements wrote, for each item, its measurement, its history row (the snapshot as JSON), its change-feed
row and the outbox's lookup. The history row of a new record repeats the record: until the record changes, version 1
*is* the row in ``measurements``. As in a system-versioned temporal table, the history now holds the superseded
versions, and the current one is read from the record:

- ``measurements.first_version_by`` (who wrote version 1) is set by the batch, which writes no history row. It is
  null for every other measurement (each other write path still writes its history row), and null again once the
  history holds version 1.
- ``measurement_first_version(m)`` is that version's snapshot, exactly as the batch stored it before: the columns
  sent, ``observed_at`` in the offset it was sent with, the instrument's total as the float the service writes, and
  the times the database set (as ``service.collections.sqljson`` writes them).
- A ``BEFORE UPDATE`` trigger writes version 1's history row, from the row as it was, before anything changes it
  (a correction, a deletion, an import's update: whatever path it comes by), and clears ``first_version_by``.
- ``record_versions`` is every version: the history's rows and those first versions. Every reader of versions
  (REST and FHIR history and vread, the Bulk Data export's snapshots) reads it. It runs as its caller
  (``security_invoker``), so the row-level security of both tables applies to it.

Revision ID: 0017
Revises: 0016
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def role() -> str:
    config = op.get_context().config
    return str(config.attributes.get("app_role", "strengths_app")) if config else "strengths_app"


def _iso(ts: str, offset: str | None = None) -> str:
    """A timestamptz as Python's ``isoformat()`` writes it (``sqljson.iso_datetime``, frozen here)."""
    local = f"timezone('UTC', {ts})" + (f" + {offset} * interval '1 minute'" if offset else "")
    fmt = (f"""CASE WHEN date_trunc('second', {ts}) = {ts} THEN 'YYYY-MM-DD"T"HH24:MI:SS' """
           """ELSE 'YYYY-MM-DD"T"HH24:MI:SS.US' END""")
    if offset is None:
        return f"to_char({local}, {fmt}) || '+00:00'"
    return (f"to_char({local}, {fmt}) || CASE WHEN {offset} < 0 THEN '-' ELSE '+' END "
            f"|| to_char(abs({offset}) * interval '1 minute', 'HH24:MI')")


# A float8 as JSON the way Python writes a float (``sqljson.float_json``, frozen here): 3.0, not 3.
_VALUE = ("CAST(CASE WHEN m.value = trunc(m.value) AND abs(m.value) < 1e15 THEN CAST(CAST(m.value AS numeric) AS text) "
          "|| '.0' ELSE CAST(m.value AS text) END AS json)")

SNAPSHOT = f"""
CREATE FUNCTION public.measurement_first_version(m public.measurements) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT pg_catalog.jsonb_build_object(
    'id', m.id, 'client_id', m.client_id, 'marker_id', m.marker_id, 'value', {_VALUE},
    'items', pg_catalog.to_jsonb(m.items), 'observed_at', {_iso("m.observed_at", "m.observed_offset")},
    'source', m.source, 'external_id', m.external_id, 'note', m.note,
    'created_at', {_iso("m.created_at")}, 'updated_at', {_iso("m.updated_at")}, 'version', m.version,
    'deleted_at', NULL)
$$"""

# The history's columns, in the order each statement below writes or selects them.
COLUMNS = "org_id, collection, record_id, version, client_id, action, data, changed_at, changed_by"
# Each first version that is still its measurement's row, as the history would hold it.
FIRST_VERSIONS = """SELECT m.org_id, 'measurements', m.id, m.version, m.client_id, 'created',
       public.measurement_first_version(m), m.created_at, m.first_version_by
  FROM measurements m WHERE m.first_version_by IS NOT NULL"""

TRIGGER = f"""
CREATE FUNCTION public.measurement_keep_first_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.history ({COLUMNS})
  VALUES (OLD.org_id, 'measurements', OLD.id, OLD.version, OLD.client_id, 'created',
          public.measurement_first_version(OLD), OLD.created_at, OLD.first_version_by);
  NEW.first_version_by := NULL;
  RETURN NEW;
END $$"""
KEEP = """
CREATE TRIGGER measurement_keep_first_version BEFORE UPDATE ON measurements FOR EACH ROW
  WHEN (OLD.first_version_by IS NOT NULL) EXECUTE FUNCTION public.measurement_keep_first_version();
"""

VIEW = f"""
CREATE VIEW record_versions WITH (security_invoker = true) AS
SELECT {COLUMNS} FROM history
UNION ALL
{FIRST_VERSIONS}
"""


def upgrade() -> None:
    op.execute("ALTER TABLE measurements ADD COLUMN first_version_by text")
    op.execute(SNAPSHOT)
    op.execute(TRIGGER)
    op.execute(KEEP)
    op.execute(VIEW)
    op.execute(f"GRANT SELECT ON record_versions TO {role()}")


def downgrade() -> None:
    op.execute(f"INSERT INTO history ({COLUMNS})\n{FIRST_VERSIONS}")  # every version kept in the history again
    op.execute("DROP VIEW record_versions")
    op.execute("DROP TRIGGER measurement_keep_first_version ON measurements")
    op.execute("DROP FUNCTION public.measurement_keep_first_version()")
    op.execute("DROP FUNCTION public.measurement_first_version(public.measurements)")
    op.execute("ALTER TABLE measurements DROP COLUMN first_version_by")
