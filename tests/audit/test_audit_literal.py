"""The audit rows sent by the group commit (service.audit.commits) carry their JSON as a
dollar-quoted literal (service.db.literal): whatever a value holds, PostgreSQL reads back exactly that value."""

from __future__ import annotations

import pytest

from service.db import literal

HOSTILE = [
    "plain", "", "'", "''; DROP TABLE audit_events; --", "\\", "\\'", "$l$", "$l$); DROP TABLE audit_events; --",
    "$$", "$l$$l$$l3$", "$l" + "0" * 8 + "$", "𝔘nicode \u2028 line", '{"path": "/v1/$l$x"}',
]


@pytest.mark.parametrize("value", HOSTILE)
async def test_a_literal_reads_back_as_exactly_its_value(db, value):
    assert await db.fetchval(f"SELECT {literal(value)}::text") == value
    assert await db.fetchval("SELECT count(*) FROM audit_events") >= 0  # still there


def test_a_nul_is_refused():
    with pytest.raises(ValueError, match="NUL"):
        literal("a\x00b")
