"""A local webhook receiver (a real HTTP server on a random 127.0.0.1 port, in a thread) and helpers."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook

FAST = {  # settings for in-process apps whose dispatcher should deliver to the local receiver quickly
    "webhooks_allow_private_targets": True, "webhooks_poll_seconds": 0.05, "webhooks_retry_base_seconds": 0.1,
    "webhooks_retry_max_delay_seconds": 0.3, "webhooks_timeout_seconds": 3, "webhooks_dispatcher": True,
}


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    answered: int


@dataclass
class Receiver:
    status: int = 204
    port: int = 0
    delay: float = 0.0  # seconds each answer takes
    received: list[Received] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                status = receiver.status
                if receiver.delay:
                    time.sleep(receiver.delay)
                with receiver._lock:
                    receiver.received.append(Received({k.lower(): v for k, v in self.headers.items()}, body, status))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def ok(self) -> list[Received]:
        with self._lock:
            return [r for r in self.received if 200 <= r.answered < 300]

    def verified(self, secret: str) -> list[dict[str, Any]]:
        """Every delivery received so far, each verified with the third-party standardwebhooks package."""
        with self._lock:
            got = list(self.received)
        return [Webhook(secret).verify(r.body, r.headers) for r in got]


async def eventually(check: Any, *, within: float = 20.0, interval: float = 0.05) -> Any:
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while True:
        result = check()
        if result:
            return result
        assert loop.time() < end, "timed out waiting"
        await asyncio.sleep(interval)


async def subscribe(c: Any, url: str, events: list[str]) -> dict[str, Any]:
    r = await c.post("/v1/webhook-subscriptions", json={"url": url, "events": events})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]
