"""The access log on the hot path: batched and sampled by settings, never losing an error's line, never a query
string, token or link code."""

from __future__ import annotations

import io
import json
import logging

from service.telemetry.logs import ACCESS, configure_logging
from tests.support.harness import Api


async def test_sampled_away_successes_but_every_error_line(api):
    token = await api.token(await api.org(), "system/Client.rs")
    stream = io.StringIO()
    handler = configure_logging("INFO", stream)
    try:
        async with Api.start(api.db, access_log_sample=0.0, access_log_flush_seconds=5.0) as quiet:
            for _ in range(5):
                assert (await quiet.client(token).get("/v1/clients?identifier=urn:mrn|SECRET-MRN")).status_code == 200
            assert (await quiet.client(token).get("/v1/clients/not-a-uuid?code=LINKCODE")).status_code == 422
            assert (await quiet.http.get("/v1/clients", headers={"Authorization": "Bearer eyJxx"})).status_code == 401
            lines = [json.loads(x) for x in stream.getvalue().splitlines() if '"service.access"' in x]
            # written at once, though the batch interval is 5 s: errors do not wait
            assert [x["status"] for x in lines] == [422, 401]
            assert all(x["request_id"] and x["event"] == "request" for x in lines)
    finally:
        logging.getLogger().removeHandler(handler)
        configure_logging()
    for needle in ("SECRET-MRN", "LINKCODE", "eyJ", "Bearer", token[:20]):
        assert needle not in stream.getvalue()


async def test_batched_lines_are_written_in_order_and_flushed(api):
    token = await api.token(await api.org(), "system/Client.rs")
    stream = io.StringIO()
    handler = configure_logging("INFO", stream)
    try:
        async with Api.start(api.db, access_log_flush_seconds=5.0) as batched:
            for _ in range(3):
                assert (await batched.client(token).get("/v1/clients")).status_code == 200
            assert '"service.access"' not in stream.getvalue()  # waiting in the batch
            assert (await batched.client(token).get("/v1/nothing-here")).status_code == 404
            statuses = [json.loads(x)["status"] for x in stream.getvalue().splitlines() if '"service.access"' in x]
            assert statuses == [200, 200, 200, 404]  # the error's line took the batch before it along
            assert (await batched.client(token).get("/v1/clients")).status_code == 200
        ACCESS.flush()  # at shutdown
        statuses = [json.loads(x)["status"] for x in stream.getvalue().splitlines() if '"service.access"' in x]
        assert statuses == [200, 200, 200, 404, 200]
    finally:
        logging.getLogger().removeHandler(handler)
        configure_logging()
