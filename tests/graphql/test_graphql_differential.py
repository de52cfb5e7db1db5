"""GraphQL answers as before (issue 26): the corpus of tests/support/graphql_corpus.py (every root field, every relation
under refused scopes, the dashboard and the tangled document under four scope sets, paging, filters, node, errors,
limits and mutations) replayed over a fresh world, compared with the answers the previous implementation (per-field
DataLoaders and per-level prefetch, at c2330ed) gave and that are recorded in tests/support/data/graphql_previous.json:
the same data, errors and audit rows, normalized only for what each run generates (ids, cursors, timestamps).

Audit rows are compared per (resource type, action, outcome), the records and clients they name merged: the
previous implementation read a mutation's relations after its transaction and wrote them a second row of the same
type; the records audited, and how, are what must not change. Both ways of answering are held to the record: the
whole-response path (``GRAPHQL_COMPILED_RESPONSES``, the default) and the stock executor alone.

``GRAPHQL_CORPUS_RECORD=1 pytest tests/graphql/test_graphql_differential.py`` rewrites the file with the current answers
(that is how it was made); a difference is a change of behaviour to explain, never a file to re-record lightly.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from service.settings import PROJECT_ROOT
from tests.support.graphql_corpus import Normalizer, build_world, cases, run_case

RECORDED = PROJECT_ROOT / "tests" / "support" / "data" / "graphql_previous.json"
RECORD = os.environ.get("GRAPHQL_CORPUS_RECORD") == "1"


async def answers(api: Any, corpus: list[dict[str, Any]]) -> list[dict[str, Any]]:
    world = await build_world(api)
    norm = Normalizer(world)
    return [{**case, **await run_case(world, norm, case)} for case in corpus]


@pytest.mark.skipif(not RECORD, reason="records the corpus only when GRAPHQL_CORPUS_RECORD=1")
async def test_record(api):
    got = await answers(api, cases())
    RECORDED.parent.mkdir(parents=True, exist_ok=True)
    RECORDED.write_text(json.dumps({"recorded_with": os.environ.get("GRAPHQL_CORPUS_COMMIT", "?"), "cases": got},
                                   indent=1, sort_keys=False) + "\n")


def merged(case: dict[str, Any]) -> dict[str, Any]:
    rows: dict[tuple[str, str, str], tuple[set[str], set[str]]] = {}
    for resource, action, outcome, ids, clients in case["audit"]:
        seen = rows.setdefault((resource, action, outcome), (set(), set()))
        seen[0].update(ids)
        seen[1].update(clients)
    return {**case, "audit": sorted([*key, sorted(i), sorted(c)] for key, (i, c) in rows.items())}


@pytest.mark.skipif(RECORD, reason="recording")
@pytest.mark.parametrize("whole", [True, False], ids=["whole response", "stock executor"])
async def test_answers_as_the_previous_implementation(api, monkeypatch, whole):
    monkeypatch.setattr(api.app.state.ctx.settings, "graphql_compiled_responses", whole)
    recorded = [merged(c) for c in json.loads(RECORDED.read_text())["cases"]]
    got = await answers(api, [{k: c[k] for k in ("name", "principal", "query", "variables")} for c in recorded])
    differ = [(want["name"], want, have) for want, have in zip(recorded, map(merged, got), strict=True)
              if want != have]
    assert not differ, "\n\n".join(f"{name}\n  was {json.dumps(want)}\n  now {json.dumps(have)}"
                                   for name, want, have in differ[:5]) + f"\n({len(differ)} cases differ)"
