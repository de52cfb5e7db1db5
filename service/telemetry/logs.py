"""Structured JSON logs (structlog, through the standard library so uvicorn's and SQLAlchemy's records are
JSON too), one access line per request, every line carrying the request id.

Logs hold no client data and no credentials: the access line names the method, the path (ids only;
the query string, which may hold identifiers such as MRNs, is left out), the status, the duration and
the app; exceptions are logged by type and code location only, never by message (a database error's
message can quote the row it refused).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson
import structlog
from structlog.typing import EventDict

_CONFIGURED: dict[str, logging.Handler] = {}


def _safe_exception(_logger: Any, _name: str, event: EventDict) -> EventDict:
    exc_info = event.pop("exc_info", None)
    if exc_info:
        if exc_info is True:
            exc_info = sys.exc_info()
        elif isinstance(exc_info, BaseException):
            exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
        chain: list[dict[str, Any]] = []
        exc = exc_info[1]
        while exc is not None and len(chain) < 5:
            frames = traceback.extract_tb(exc.__traceback__)[-8:]
            chain.append({"type": f"{type(exc).__module__}.{type(exc).__qualname__}",
                          "at": [f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno} {f.name}" for f in frames]})
            exc = exc.__cause__ or exc.__context__
        event["exception"] = chain
    return event


def _render(_logger: Any, _name: str, event: EventDict) -> str:
    return orjson.dumps(event, default=str).decode()


class _Stderr:
    """Whatever sys.stderr is at the time of writing (test runners swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def _skip_unused_record_fields() -> None:
    """The JSON lines hold the event dict only, never the caller's file and line, the process or the thread;
    the standard library would still look them up for every record (walking the stack to find the caller:
    most of the ~110 us an access line cost). ``_srcfile = None`` is logging's documented switch for that."""
    logging._srcfile = None
    logging.logProcesses = False
    logging.logThreads = False
    logging.logMultiprocessing = False


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> logging.Handler:
    """JSON lines on ``stream`` (stderr by default); returns the handler (tests attach their own stream)."""
    _skip_unused_record_fields()
    structlog.configure(
        processors=[*SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=SHARED,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _safe_exception, _render],
    )
    handler = logging.StreamHandler(stream or _Stderr())
    handler.setFormatter(formatter)
    root = logging.getLogger()
    old = _CONFIGURED.get("handler")
    ACCESS.flush()  # batched access lines go to the stream they were logged for
    if old is not None and stream is None:
        return old
    if old is not None:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore"):  # their INFO lines quote whole URLs, query strings included
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    _CONFIGURED["handler"] = handler
    return handler


_ACCESS_LOGGER = logging.getLogger("service.access")


class AccessLog:
    """One JSON line per request, made cheap on the hot path (issue 25).

    The structlog chain (processors, the standard library's record and handler lock, a write per line) cost about
    0.04 ms per request; here the line is one ``orjson.dumps`` of a flat dict, written to the same handler's stream
    (``configure_logging``) in batches: lines of successful requests wait (at most ``flush_seconds``, at most
    ``BATCH`` lines) and go out in one write; a line of a refused or failed request (status >= 400) is written at
    once, with the batch before it, so the order is kept and no error's line waits in memory. ``sample`` keeps that
    share of successful requests' lines (1.0: all); error lines are never sampled away. The line holds what the
    structlog line held (method, path without its query string, status, duration, app, organization, request id)
    and nothing else: no query string, header, token or link code.
    """

    BATCH = 256

    def __init__(self, sample: float = 1.0, flush_seconds: float = 0.5) -> None:
        self.sample = sample
        self.flush_seconds = flush_seconds
        self._pending: list[bytes] = []
        self._timer: Any = None
        self._count = 0
        self._every = round(1 / sample) if 0 < sample < 1 else 1

    def line(self, *, method: str, path: str, status: int, duration_ms: float, app_id: str | None,
             org_id: str | None, request_id: str) -> None:
        error = status >= 400
        if not error:
            if self.sample <= 0:
                return
            self._count += 1
            if self._every > 1 and self._count % self._every:
                return
        if not error and not _ACCESS_LOGGER.isEnabledFor(logging.INFO):
            return
        self._pending.append(orjson.dumps({
            "method": method, "path": path, "status": status, "duration_ms": duration_ms, "app_id": app_id,
            "org_id": org_id, "event": "request", "request_id": request_id,
            "level": "warning" if status >= 500 else "info", "logger": "service.access",
            "timestamp": _now_iso(),
        }) + b"\n")
        if error or self.flush_seconds <= 0 or len(self._pending) >= self.BATCH:
            self.flush()
        elif self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(self.flush_seconds, self.flush)
            except RuntimeError:  # no loop (a synchronous caller): at once
                self.flush()

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        data, self._pending = b"".join(self._pending).decode(), []
        handler = _CONFIGURED.get("handler")
        stream = getattr(handler, "stream", None) or _Stderr()
        try:
            stream.write(data)
            stream.flush()
        except (OSError, ValueError):  # a closed stream (interpreter shutdown): nothing to write to
            pass


def _now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


ACCESS = AccessLog()
atexit.register(ACCESS.flush)


def configure_access_log(sample: float, flush_seconds: float) -> AccessLog:
    """The process's access log with the settings' sampling and batching (``create_app``)."""
    ACCESS.flush()
    ACCESS.sample = sample
    ACCESS.flush_seconds = flush_seconds
    ACCESS._every = round(1 / sample) if 0 < sample < 1 else 1
    return ACCESS
