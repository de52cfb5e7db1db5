"""The execution context's shortcuts (service/graphql/execution.py) answer exactly as graphql-core does, errors
included: a small schema run by both, over values that take the shortcuts and values that must not."""

from __future__ import annotations

import enum
from typing import Any

import pytest
import strawberry

from service.graphql.execution import ExecutionContext


@strawberry.enum
class Mood(enum.Enum):
    CALM = "calm"
    BUSY = "busy"


class Bag:
    """A record-like object: attributes read by Strawberry's default resolver."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)


@strawberry.type
class Leaf:
    label: str
    note: str | None
    count: int
    mood: Mood


@strawberry.type
class Edge:
    node: Leaf
    maybe: Leaf | None


@strawberry.type
class Page:
    edges: list[Edge]
    loose: list[Leaf | None]
    strict: list[Leaf] | None

    @strawberry.field
    async def later(self) -> Leaf | None:
        return self.edges[0].node if self.edges else None  # type: ignore[return-value]


GOOD = Bag(label="a", note=None, count=1, mood=Mood.CALM)
PAGES = {
    "good": Bag(edges=[Bag(node=GOOD, maybe=None), Bag(node=GOOD, maybe=GOOD)], loose=[GOOD, None], strict=[GOOD]),
    "null for non-null leaf": Bag(edges=[Bag(node=Bag(label=None, note="x", count=1, mood=Mood.BUSY), maybe=GOOD)],
                                  loose=[], strict=None),
    "missing attribute": Bag(edges=[Bag(node=Bag(note=None, count=2, mood=Mood.CALM), maybe=None)], loose=[GOOD],
                             strict=[]),
    "refused scalar": Bag(edges=[Bag(node=Bag(label="b", note=None, count="many", mood=Mood.CALM), maybe=None)],
                          loose=[Bag(label="c", note=None, count=2**40, mood=Mood.CALM)], strict=[GOOD]),
    "refused enum": Bag(edges=[Bag(node=Bag(label="b", note=None, count=1, mood="angry"), maybe=None)], loose=[],
                        strict=[GOOD]),
    "null item of a non-null list": Bag(edges=[None], loose=[None], strict=[None, GOOD]),
    "not a list": Bag(edges=(Bag(node=GOOD, maybe=None),), loose="abc", strict=GOOD),
    "null object": Bag(edges=[Bag(node=None, maybe=None)], loose=[GOOD], strict=[GOOD]),
}


@strawberry.type
class Query:
    @strawberry.field
    def page(self, name: str) -> Page:
        return PAGES[name]  # type: ignore[return-value]


DOCUMENT = """query($name: String!) { page(name: $name) {
  edges { node { label note count mood } maybe { label mood } }
  loose { label count } strict { mood } later { label }
  alias: edges { n: node { count __typename } }
} }"""


@pytest.mark.parametrize("name", list(PAGES))
async def test_the_shortcuts_answer_as_graphql_core(name):
    plain = strawberry.Schema(query=Query)
    fast = strawberry.Schema(query=Query, execution_context_class=ExecutionContext)
    expected = await plain.execute(DOCUMENT, variable_values={"name": name})
    got = await fast.execute(DOCUMENT, variable_values={"name": name})
    assert got.data == expected.data
    assert [e.formatted for e in got.errors or []] == [e.formatted for e in expected.errors or []]
    if name == "good":
        assert not got.errors
    else:
        assert got.errors
