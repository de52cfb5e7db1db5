"""The direct read path (service.collections.fastread) beside the FastAPI route it bypasses: which requests it
served, and both answers to one request."""

from __future__ import annotations

import pytest

from service.collections import fastread

# A token reading clients with their strengths and goals (``?include=strengths,goals``).
READER = "system/Client.r system/Strength.s system/Goal.s"
VOLATILE = {"x-request-id", "ratelimit"}  # a new id per request; the bucket has one token fewer


@pytest.fixture
def served(monkeypatch):
    """Counts the requests the direct path served (the rest went to FastAPI)."""
    calls = []
    serve = fastread._serve

    async def counting(*args, **kwargs):
        calls.append(args[1])
        return await serve(*args, **kwargs)

    monkeypatch.setattr(fastread, "_serve", counting)
    return calls


async def both(c, url: str):
    """The direct path's answer, and FastAPI's for the same request (a repeated ``include`` sends it there, and
    FastAPI reads the last; an unknown parameter would be a 422 there)."""
    base, _, query = url.partition("?")
    value = query.removeprefix("include=")
    return await c.get(url), await c.get(f"{base}?include={value}&include={value}")


def same(fast, slow) -> None:
    assert fast.status_code == slow.status_code, (fast.text, slow.text)
    assert fast.content == slow.content
    strip = lambda r: sorted((k, v) for k, v in r.headers.items() if k not in VOLATILE)  # noqa: E731
    assert strip(fast) == strip(slow)
