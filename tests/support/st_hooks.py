"""Schemathesis hooks for the run against the live server (``SCHEMATHESIS_HOOKS=tests.support.st_hooks``); the
in-process test (tests/contract/test_schemathesis.py) imports this module, so both use the same serializer and hook.

- NDJSON bodies (bulk import) are sent as the generated text;
- an ``Idempotency-Key`` names one request (IETF httpapi draft): the fuzzer reuses the same few keys with
  different bodies, which the contract answers with 422, so each call's key gets a unique suffix.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx: Any, value: Any) -> bytes:
    """Bulk import bodies: the generated text as it is (a non-string, in negative cases, as JSON)."""
    return value.encode("utf-8", "surrogatepass") if isinstance(value, str) else json.dumps(value).encode()


def unique_key(key: Any) -> Any:
    if isinstance(key, str) and 0 < len(key) <= 200 and key.isascii() and key.isprintable():
        return f"{key}-{uuid.uuid4().hex}"
    return key


@schemathesis.hook
def before_call(ctx: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """Every call of every phase (examples, coverage, fuzzing, stateful; CLI and pytest alike): a generation
    hook such as ``map_headers`` is not applied to the coverage phase's cases."""
    if case.headers and "Idempotency-Key" in case.headers:
        case.headers["Idempotency-Key"] = unique_key(case.headers["Idempotency-Key"])
