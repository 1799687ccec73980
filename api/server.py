"""How ``ranktune serve`` runs uvicorn: deadlines on reading requests, a connection limit,
a bounded graceful shutdown, ``nosniff`` on every answer, and quiet client disconnects.

uvicorn's httptools protocol times out only an idle kept-alive connection between two
requests. A connection that never sends a request, or sends its headers or its body slowly,
was kept forever (and graceful shutdown waited for it forever). :class:`HardenedProtocol`
adds two deadlines: the headers must arrive within ``header_timeout_s`` of the connection
(or of the request's first byte on a kept-alive connection), the body within
``body_timeout_s`` of the headers. Past a deadline the server answers 408 (when nothing is
being answered on that connection yet) and closes it. Headers are bounded in size too
(``max_header_bytes``, 431): httptools keeps whatever arrives, and a client could send
hundreds of megabytes of header lines within the deadline.

It also fixes how uvicorn treats a client that hangs up with pipelined requests: only the
last request was marked disconnected, so the one being answered wrote to the closed socket
and both uvicorn and the app's error handler logged a traceback. Every unanswered request
is marked now, and the disconnect is one INFO line.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, ClassVar
from urllib.parse import quote

import uvicorn
from fastapi import FastAPI
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from api.errors import error_body
from api.settings import Settings

__all__ = ["HardenedProtocol", "protocol_for", "run", "tune_gc_after_startup"]

logger = logging.getLogger("ranktune.server")

# On every answer the server writes: the app's, and uvicorn's own 400, 500 and 503.
SERVER_HEADERS = [("X-Content-Type-Options", "nosniff")]
# Descriptors beyond the connections: the database pool, the listener, logs, and excess
# connections that wait for their 503.
SPARE_FILE_DESCRIPTORS = 128

# What the protocol is reading; a deadline bounds the headers or the body.
_IDLE, _HEADERS, _BODY = 0, 1, 2


class HardenedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with deadlines on reading a request and with every
    unanswered request marked when the client hangs up. Configure it by subclassing
    (:func:`protocol_for`): uvicorn builds one instance per connection."""

    header_timeout_s: ClassVar[float] = 10.0
    max_header_bytes: ClassVar[int] = 65_536
    body_timeout_s: ClassVar[float] = 20.0
    shutdown_timeout_s: ClassVar[float] = 25.0

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._reading = _IDLE
        self._deadline: asyncio.TimerHandle | None = None
        self._deadline_for = _IDLE
        self._deadline_reason = ""
        # Bytes of the headers being read, counted per read; -1 while the read in which the
        # request began is not over (it may hold the end of the previous request too).
        self._header_bytes = 0
        # Bytes of request line and headers as the parser hands them over: counts headers
        # that arrive whole in one read, which the per-read count does not see.
        self._parsed_header_bytes = 0
        # Requests whose headers arrived and whose answer is not complete yet: the one being
        # answered and those pipelined behind it.
        self._unanswered: list[RequestResponseCycle] = []
        self._closed_here = False

    # -- deadlines -------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A connection that sends nothing is closed at the first request's header deadline.
        self._start_deadline(_HEADERS)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._closed_here:
            return
        if self._reading == _HEADERS:
            if self._header_bytes < 0:
                self._header_bytes = 0
            else:
                self._header_bytes += len(data)
                if self._header_bytes > self.max_header_bytes:
                    self._refuse_large_headers()
                    return
        # Only a change of what is being read moves the deadline; more bytes of the same
        # headers or body do not extend it (or a byte every few seconds would hold it open).
        if self._reading != self._deadline_for:
            if self._reading == _IDLE:
                self._cancel_deadline()
            else:
                self._start_deadline(self._reading)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading = _HEADERS
        self._header_bytes = -1
        self._parsed_header_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._parsed_header_bytes += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._parsed_header_bytes += len(name) + len(value) + 4  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._closed_here:
            return
        if self._parsed_header_bytes > self.max_header_bytes:
            self._refuse_large_headers()  # the request is never handed to the application
            return
        self._reading = _BODY
        previous = self.cycle
        super().on_headers_complete()
        if self.cycle is not previous:  # not when uvicorn upgrades the connection instead
            unanswered = [cycle for cycle in self._unanswered if not cycle.response_complete]
            unanswered.append(self.cycle)
            self._unanswered = unanswered

    def on_body(self, body: bytes) -> None:
        if not self._closed_here:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._closed_here:
            return
        self._reading = _IDLE
        super().on_message_complete()

    def _unsupported_upgrade_warning(self) -> None:
        # Served without WebSockets (no route is one), an Upgrade header is ignored and the
        # request answered as usual; uvicorn's two warnings (one says a library is missing)
        # would let any client fill the log.
        logger.debug("%s asked for a protocol upgrade; answered as HTTP/1.1", _address(self.client))

    def _start_deadline(self, reading: int, seconds: float | None = None) -> None:
        self._cancel_deadline()
        timeout = self.header_timeout_s if reading == _HEADERS else self.body_timeout_s
        self._deadline_reason = (
            f"within {timeout:g} s" if seconds is None else "before the server shut down"
        )
        self._deadline = self.loop.call_later(
            timeout if seconds is None else seconds, self._deadline_passed
        )
        self._deadline_for = reading

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._deadline_for = _IDLE

    def _deadline_passed(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.flow.read_paused:
            # The server stopped reading (a pipelined request waits for the one before it):
            # the delay is ours, not the client's.
            self._start_deadline(self._deadline_for)
            return
        client = _address(self.client)
        if self._reading == _IDLE:
            logger.debug("%s sent no request within %g s; closed", client, self.header_timeout_s)
            self._close()
            return
        part = "headers" if self._reading == _HEADERS else "body"
        answered = self._answer_and_close(
            b"408 Request Timeout",
            "RequestTimeout",
            f"{part}: expected the complete request {part} {self._deadline_reason}",
            part,
        )
        logger.info(
            "%s did not send the request %s %s; %s",
            client,
            part,
            self._deadline_reason,
            "answered 408 and closed" if answered else "closed",
        )

    def _refuse_large_headers(self) -> None:
        limit = self.max_header_bytes
        answered = self._answer_and_close(
            b"431 Request Header Fields Too Large",
            "HeadersTooLarge",
            f"headers: expected at most {limit} bytes of request line and headers",
            "headers",
        )
        logger.info(
            "%s sent more than %d bytes of headers; %s",
            _address(self.client),
            limit,
            "answered 431 and closed" if answered else "closed",
        )

    def _answer_and_close(self, status: bytes, kind: str, detail: str, field: str) -> bool:
        """Answer in the error shape and close; no answer if another one is under way on
        this connection (one in the middle of it, or before an earlier pipelined answer,
        would corrupt the stream). Whether it answered."""
        current = self.cycle if self._reading == _BODY else None
        busy = (current is not None and current.response_started) or any(
            c is not current and not c.response_complete for c in self._unanswered
        )
        if not busy:
            payload = json.dumps(error_body(kind, detail, field), separators=(",", ":")).encode()
            headers = [
                *self.server_state.default_headers,
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"cache-control", b"no-store"),
                (b"connection", b"close"),
            ]
            lines = [b"HTTP/1.1 " + status] + [name + b": " + value for name, value in headers]
            self.transport.write(b"\r\n".join(lines) + b"\r\n\r\n" + payload)
        self._close()
        return not busy

    def _close(self) -> None:
        self._cancel_deadline()
        self._closed_here = True
        self.transport.close()

    # -- shutdown and disconnects ----------------------------------------------------------
    def shutdown(self) -> None:
        # A request still arriving gets at most half the shutdown budget to arrive, so that
        # it is answered (408 if late) and its handler has the other half before uvicorn
        # cancels whatever still runs.
        budget = self.shutdown_timeout_s / 2
        if self._deadline is not None and self._deadline_for != _IDLE:
            remaining = self._deadline.when() - self.loop.time()
            if remaining > budget:
                self._start_deadline(self._deadline_for, budget)
        super().shutdown()

    def eof_received(self) -> None:
        # The transport closes as soon as this returns, but connection_lost runs only on a
        # later turn of the loop: an answer written in between would hit a closed socket.
        self._mark_disconnected()
        super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        unanswered = self._mark_disconnected()
        self._unanswered = []
        if unanswered and not self._closed_here:
            scope = unanswered[0].scope
            more = len(unanswered) - 1
            logger.info(
                "%s closed the connection before the answer to %s %s%s",
                _address(self.client),
                scope["method"],
                # Percent-encoded as uvicorn's access log does: a decoded path could forge lines.
                quote(scope["path"]),
                f" (and {more} pipelined request{'s' if more > 1 else ''})" if more else "",
            )
        super().connection_lost(exc)

    def _mark_disconnected(self) -> list[RequestResponseCycle]:
        """Mark every unanswered request of this connection disconnected: their answers are
        dropped and their bodies end. uvicorn marks only the latest one."""
        unanswered = [cycle for cycle in self._unanswered if not cycle.response_complete]
        for cycle in unanswered:
            cycle.disconnected = True
            cycle.message_event.set()
        return unanswered


def _address(client: tuple[str, int] | None) -> str:
    return f"client {client[0]}:{client[1]}" if client else "a client"


def protocol_for(settings: Settings) -> type[HardenedProtocol]:
    """The protocol class with the deadlines of ``settings``."""

    class Configured(HardenedProtocol):
        header_timeout_s = settings.header_timeout_s
        max_header_bytes = settings.max_header_bytes
        body_timeout_s = settings.body_timeout_s
        shutdown_timeout_s = settings.shutdown_timeout_s

    return Configured


def _raise_file_limit(needed: int) -> None:
    """Raise the soft limit on open files to ``needed`` if the hard limit allows: the usual
    default of 1024 is below what ``max_connections`` promises, and past it the server
    cannot even accept a connection to refuse it."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        logger.warning(
            "open files are limited to %d (hard limit); RANKTUNE_MAX_CONNECTIONS needs %d",
            target,
            needed,
        )


def tune_gc_after_startup(app: FastAPI) -> None:
    """Once the app has started, collect cyclic garbage far less often.

    Everything alive then (modules, routes, schemas, the runtime: some 170k objects) is
    put out of the collector's reach (``gc.freeze``): a full collection walks every tracked
    object with the GIL held, stopping the event loop and the event writer alike, 50-400 ms
    each on a loaded 2-core machine, and under the event route's load one ran every second
    or two. And the youngest generation is collected after 20,000 net allocations instead
    of 700: a batch of events allocates several objects per event that live until its
    commit, so almost every batch triggered a young collection that promoted them, and
    their promotions the older generations' collections. Measured with gc.callbacks under
    benchmarks/ingestion.py's load: the collector took about 27% of the server's wall time,
    8% with the freeze alone, 0.2% with both.

    Only for ``ranktune serve``: the objects frozen are never collected, which a test
    process that builds many apps should not pay.
    """
    started = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
        async with started(app) as state:
            gc.collect()
            gc.freeze()
            gc.set_threshold(YOUNG_GC_THRESHOLD)
            yield state

    app.router.lifespan_context = lifespan


# Net allocations of tracked objects between two collections of the youngest generation.
YOUNG_GC_THRESHOLD = 20_000


def run(app: FastAPI, settings: Settings, *, log_level: str, access_log: bool) -> None:
    """Serve ``app`` with uvicorn until SIGTERM or SIGINT."""
    _raise_file_limit(settings.max_connections + SPARE_FILE_DESCRIPTORS)
    tune_gc_after_startup(app)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        access_log=access_log,
        http=protocol_for(settings),
        # No route is a WebSocket: an upgrade request is answered as an ordinary request.
        ws="none",
        # uvicorn refuses a request when the open connections, its own included, reach the
        # limit: + 1 serves exactly max_connections.
        limit_concurrency=settings.max_connections + 1,
        timeout_keep_alive=settings.keep_alive_timeout_s,
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
        server_header=False,
        headers=SERVER_HEADERS,
        # The process's logging is configured already (api.logs: format, request ids,
        # redaction); uvicorn's loggers write through it instead of their own handlers.
        log_config=None,
    )
