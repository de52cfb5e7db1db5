"""The server's HTTP protocol (service.api.joined_writes): uvicorn's own, its writes of one event-loop turn sent
together. A response the app sends whole leaves in one write (uvicorn alone makes two: the head, then the body); a
streamed one still leaves chunk by chunk; and on a real loopback socket HTTP/1.1 keeps its promises (keep-alive,
pipelining, HEAD, 204, chunks, ``Connection: close``, a malformed request's 400)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from service import cli
from service.api.joined_writes import JoinedWritesProtocol
from tests.support.servers import free_port, serve_app

BODY = b'{"id":"0190f1f0-0000-7000-8000-000000000000","strengths":[]}'
CHUNKS = [b"first,", b"second,", b"third"]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    path = scope["path"]
    if path == "/stream":  # no Content-Length: chunked, the producer yielding to the loop between chunks
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for chunk in CHUNKS:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b""})
    elif path == "/empty":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
    else:
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]})
        await send({"type": "http.response.body", "body": BODY})


class Recording(asyncio.Transport):
    """A connection's socket, as the protocol sees it: what was written, in writes, and whether it was closed."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed_after: int | None = None

    def write(self, data: Any) -> None:
        assert self.closed_after is None, "written after close"
        self.writes.append(bytes(data))

    def close(self) -> None:
        if self.closed_after is None:
            self.closed_after = len(self.writes)

    def is_closing(self) -> bool:
        return self.closed_after is not None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


async def exchange(protocol_class: type[HttpToolsProtocol], request: bytes) -> Recording:
    """``request`` handed to a fresh connection of ``protocol_class``; the transport once every response is out."""
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    config.load()
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
    transport = Recording()
    protocol.connection_made(transport)
    protocol.data_received(request)
    for _ in range(200):
        await asyncio.sleep(0.005)
        if transport.closed_after is not None or (
                protocol.cycle is not None and protocol.cycle.response_complete and not protocol.pipeline):
            break
    await asyncio.sleep(0.02)  # a held write would leave at the end of this turn
    protocol.connection_lost(None)
    return transport


GET = b"GET /whole HTTP/1.1\r\nHost: test\r\n\r\n"


async def test_a_whole_response_leaves_in_one_write_where_uvicorn_alone_makes_two():
    stock = await exchange(HttpToolsProtocol, GET)
    joined = await exchange(JoinedWritesProtocol, GET)
    assert len(stock.writes) == 2  # what the class exists for: uvicorn writes the head, then the body
    assert len(joined.writes) == 1
    assert joined.writes[0] == b"".join(stock.writes)  # the same bytes
    assert joined.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert joined.writes[0].endswith(b"\r\n\r\n" + BODY)


async def test_pipelined_requests_each_leave_whole_and_in_order():
    request = GET + b"HEAD /whole HTTP/1.1\r\nHost: test\r\n\r\n" + b"GET /empty HTTP/1.1\r\nHost: test\r\n\r\n"
    joined = await exchange(JoinedWritesProtocol, request)
    responses = _responses(b"".join(joined.writes), ["GET", "HEAD", "GET"])
    assert [(r.status_code, body) for r, body in responses] == [(200, BODY), (200, b""), (204, b"")]
    assert len(joined.writes) <= 3  # one per response at most, never a head apart from its body


async def test_a_streamed_response_still_leaves_chunk_by_chunk():
    joined = await exchange(JoinedWritesProtocol, b"GET /stream HTTP/1.1\r\nHost: test\r\n\r\n")
    [(response, body)] = _responses(b"".join(joined.writes), ["GET"])
    assert response.status_code == 200
    assert body == b"".join(CHUNKS)
    assert len(joined.writes) >= len(CHUNKS)  # the head with the first chunk, each later chunk when it is sent


async def test_a_malformed_request_gets_its_400_before_the_connection_closes():
    joined = await exchange(JoinedWritesProtocol, b"NOT HTTP AT ALL\r\n\r\n")
    assert joined.closed_after == len(joined.writes) == 1  # written, then closed: close sends what is held
    assert joined.writes[0].startswith(b"HTTP/1.1 400 ")


def _responses(data: bytes, methods: list[str]) -> list[tuple[h11.Response, bytes]]:
    """``data`` read as the responses to requests of ``methods``, in order (h11 as the client)."""
    client = h11.Connection(h11.CLIENT)
    client.receive_data(data)
    out: list[tuple[h11.Response, bytes]] = []
    for method in methods:
        client.send(h11.Request(method=method, target="/", headers=[("Host", "test")]))
        client.send(h11.EndOfMessage())
        response, body = None, b""
        while True:
            event = client.next_event()
            assert event is not h11.NEED_DATA, f"the response to {method} is incomplete: {data!r}"
            if isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
        assert response is not None
        out.append((response, body))
        if len(out) < len(methods):
            client.start_next_cycle()
    return out


def test_on_a_real_socket_http_1_1_holds():
    """Pipelined keep-alive requests (a whole body, HEAD, a stream, 204), the last asking to close: every response
    complete and in order, then the server closes the connection."""
    requests = [("GET", "/whole", []), ("HEAD", "/whole", []), ("GET", "/stream", []), ("GET", "/empty", []),
                ("GET", "/whole", [("Connection", "close")])]
    wire = b"".join((f"{m} {p} HTTP/1.1\r\nHost: test\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h) + "\r\n").encode()
                    for m, p, h in requests)
    received = b""
    port = free_port()
    with serve_app(app, port, http=JoinedWritesProtocol, lifespan="off"), \
            socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(wire)
        while chunk := sock.recv(65536):  # until the server closes
            received += chunk
    responses = _responses(received, [m for m, _, _ in requests])
    assert [(r.status_code, body) for r, body in responses] == [
        (200, BODY), (200, b""), (200, b"".join(CHUNKS)), (204, b""), (200, BODY)]
    assert dict(responses[1][0].headers)[b"content-length"] == str(len(BODY)).encode()


def test_serve_runs_uvicorn_with_the_joined_writes_protocol(monkeypatch):
    """Both of ``serve``'s uvicorn paths: one worker (the app itself) and several (uvicorn's worker processes)."""
    runs: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: runs.append(options))
    monkeypatch.setattr("service.app.served_app", lambda settings: object())
    cli._serve_uvicorn(None, "127.0.0.1", 8000, 1)  # type: ignore[arg-type]
    cli._serve_uvicorn(None, "127.0.0.1", 8000, 2)  # type: ignore[arg-type]
    assert [options["http"] for options in runs] == [JoinedWritesProtocol, JoinedWritesProtocol]
