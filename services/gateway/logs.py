"""structlog as JSON lines with a request id bound to every line. Never log transcript text or emails."""

from __future__ import annotations

import asyncio
import atexit
import logging
import secrets
import sys
import threading
from typing import Any, TextIO

import msgspec
import structlog
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from structlog.typing import EventDict

REQUEST_ID_HEADER = "x-request-id"


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(format="%(message)s", stream=sys.stdout, level=level.upper())
    # httpx logs every URL at INFO, and Cal.com API v1 carries its key in the query string: drop those
    # records at the handler, whatever level a library later gives the httpx logger.
    for handler in logging.getLogger().handlers:
        handler.addFilter(_drop_http_client_info)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            render_json,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=_lines,
        cache_logger_on_first_use=True,
    )


class LineWriter:
    """structlog's logger: one line per event, to ``file`` (the current ``sys.stdout`` when None).

    Lines logged at debug or info level on an event loop's thread within one pass of the loop go out in
    one write at the start of its next pass (that pass polls for I/O without waiting, so no line waits
    for I/O): every write is a system call, and a wake-up of supervisord reading the pipe, and a busy
    gateway logs several lines per pass. A warning or worse, a line from a thread without a running loop
    and whatever is left at exit are written at once (after the lines before them, in order)."""

    def __init__(self, file: TextIO | None = None) -> None:
        self._file = file
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._flush_on: asyncio.AbstractEventLoop | None = None  # the loop a flush is scheduled on
        atexit.register(self.flush)

    def later(self, message: str) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.now(message)
            return
        with self._lock:
            self._pending.append(message)
            if len(self._pending) >= _MAX_PENDING:
                self._write()
            elif self._flush_on is not loop:  # none scheduled (or on another loop, which may be gone)
                self._flush_on = loop
                loop.call_soon(self.flush)

    def now(self, message: str) -> None:
        with self._lock:
            self._pending.append(message)
            self._write()

    def flush(self) -> None:
        with self._lock:
            self._write()

    def _write(self) -> None:
        self._flush_on = None
        if not self._pending:
            return
        lines, self._pending = self._pending, []
        file = self._file or sys.stdout
        file.write("\n".join(lines) + "\n")
        file.flush()

    debug = info = later
    msg = log = warn = warning = err = error = critical = exception = fatal = failure = now


_MAX_PENDING = 256
_WRITER = LineWriter()


def _lines(*_: Any) -> LineWriter:
    return _WRITER


def _unjsonable(value: Any) -> Any:
    """A value JSON has no type for, as structlog's ``JSONRenderer`` writes it."""
    structlog_form = getattr(value, "__structlog__", None)
    return structlog_form() if callable(structlog_form) else repr(value)


_ENCODER = msgspec.json.Encoder(enc_hook=_unjsonable)
_STDLIB_JSON = structlog.processors.JSONRenderer()


def render_json(logger: Any, name: str, event: EventDict) -> str:
    """The line as JSON, with msgspec (the same JSON as structlog's ``JSONRenderer``, in a fraction of
    its time: a webhook delivery writes a line); bytes are written as ``repr`` (msgspec's own form is
    base64), and anything msgspec cannot write goes through ``JSONRenderer`` itself."""
    if any(isinstance(v, (bytes, bytearray)) for v in event.values()):
        event = {k: repr(v) if isinstance(v, (bytes, bytearray)) else v for k, v in event.items()}
    try:
        return _ENCODER.encode(event).decode()
    except (TypeError, ValueError, msgspec.EncodeError):
        return str(_STDLIB_JSON(logger, name, event))


def drop_saq_enqueue_lines() -> None:
    """SAQ logs every enqueue at INFO, and ``job_enqueued`` (``jobs_enqueued`` for a batch) already says it,
    with the request id: in the gateway, where a delivery queues four jobs, those lines were a third of
    what it wrote per delivery."""
    logging.getLogger("saq").addFilter(_not_saq_enqueue)


def _not_saq_enqueue(record: logging.LogRecord) -> bool:
    return record.msg != "Enqueuing %s"


def _drop_http_client_info(record: logging.LogRecord) -> bool:
    return not (record.name.startswith(("httpx", "httpcore")) and record.levelno < logging.WARNING)


def current_request_id() -> str | None:
    """The request id bound to this task's logs (jobs bind the id of the request that queued them)."""
    value = structlog.contextvars.get_contextvars().get("request_id")
    return str(value) if value else None


def request_id_middleware(app: ASGIApp) -> ASGIApp:
    """Take ``X-Request-ID`` (or make one), bind it to the logs and echo it on the response."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        incoming = headers.get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
        request_id = incoming[:64] if incoming.isprintable() and incoming else secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        # bound for the request and reset to what it was after (``bound_contextvars`` does the same, and
        # first copies and walks the whole context)
        bound = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.reset_contextvars(**bound)

    return middleware
