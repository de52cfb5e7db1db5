"""Time-ordered ids for the tables every request or event appends to

``audit_events`` (a row per request), ``webhook_outbox`` and ``webhook_deliveries`` (a row per event and per
subscription) took ``gen_random_uuid()`` for their primary keys. A random key lands on a random leaf of the key's
index: once the index outgrows memory each row costs a page read, and after every checkpoint the first change to
each leaf writes the whole 8 kB page to the WAL, so nearly every row does. ``uuid_time_ordered()`` makes an RFC 9562
version 7 UUID (48 bits of Unix milliseconds, then random bits), so new rows land on the index's right edge, as the
records' own ids (``service.collections.types.uuid7``) already do. ``bench/idorder.py`` measures the difference.

The function is SQL, so it runs on every PostgreSQL the service supports (``uuidv7()`` is built in from 18 only);
it names its built-in functions and operator with their schema, so no search path can change them, and it has no
``SET search_path`` clause, which would stop PostgreSQL from inlining it (measured: 50.0 µs a row with one, 43-46
without).

Revision ID: 0015
Revises: 0014
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("audit_events", "webhook_outbox", "webhook_deliveries")


def upgrade() -> None:
    # A version 4 UUID (the variant bits already right), its first 48 bits replaced by the milliseconds since the
    # epoch and its version nibble turned from 4 (0100) to 7 (0111): bits 52 and 53 of the 128, set_bit's numbering.
    op.execute("""
CREATE FUNCTION uuid_time_ordered() RETURNS uuid LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
  SELECT pg_catalog.encode(pg_catalog.set_bit(pg_catalog.set_bit(pg_catalog.overlay(
           pg_catalog.uuid_send(pg_catalog.gen_random_uuid()),
           pg_catalog.substring(pg_catalog.int8send(pg_catalog.floor(
             pg_catalog.date_part('epoch', pg_catalog.clock_timestamp()) OPERATOR(pg_catalog.*) 1000
           )::pg_catalog.int8), 3),
           1, 6), 52, 1), 53, 1), 'hex')::pg_catalog.uuid
$$
""")
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN id SET DEFAULT uuid_time_ordered()")


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN id SET DEFAULT gen_random_uuid()")
    op.execute("DROP FUNCTION uuid_time_ordered()")
