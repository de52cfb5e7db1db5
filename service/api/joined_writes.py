"""uvicorn's HTTP protocol, its writes of one event-loop turn sent together.

uvicorn writes a response's status line and headers when the app sends ``http.response.start``, and its body
when the app sends ``http.response.body``: two writes, so two system calls, two TCP segments and two wake-ups of
the client for a response that the app sends whole, as every response of this service but a file's is. Here the
connection's writes are held until the end of the event loop's turn and sent as one; a streamed response still
leaves chunk by chunk, since its producer yields to the loop between them. Nothing else changes: the same
parser, flow control, keep-alive and shutdown (uvicorn's own ``HttpToolsProtocol``, handed a transport that
holds the writes). What it saves is measured in bench/JOURNAL.md, thirteenth round.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class JoinedWritesTransport(asyncio.Transport):
    """A connection's transport whose writes of one event-loop turn reach the socket in one write."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._held:
            self._loop.call_soon(self._flush)
        self._held.append(bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def _flush(self) -> None:
        if not self._held:
            return
        held, self._held = self._held, []
        if not self._transport.is_closing():
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        self._flush()  # what was written before close is sent, as by asyncio's own transports
        self._transport.close()

    def abort(self) -> None:
        self._held = []
        self._transport.abort()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._held))

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()


class JoinedWritesProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol (``uvicorn.run(..., http=JoinedWritesProtocol)``) on a transport whose writes
    of one event-loop turn are sent together."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(JoinedWritesTransport(transport, self.loop))
