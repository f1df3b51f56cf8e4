"""Connection limits of the HTTP server: header timeout, keep-alive, most connections.

uvicorn closes an idle keep-alive connection after ``timeout_keep_alive`` seconds, but that
timer starts only after a response and is reset by every byte received; a connection that
never sends a request, or sends its headers one byte at a time, stays open for ever
(200 such sockets were still open after 45 s). :class:`HeaderTimeoutH11` adds the missing
timer: from the moment a connection opens, and again after each response, the client has
``header_timeout_s`` seconds to deliver a complete request head, however it trickles in;
otherwise the connection is closed. The body is bounded by the request timeout of the app.
``limit_concurrency`` makes uvicorn answer 503 beyond ``max_connections`` connections.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from .settings import ServeSettings

__all__ = ["HeaderTimeoutH11", "protocol_class", "uvicorn_options"]


class HeaderTimeoutH11(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request head (``header_timeout_s``)."""

    header_timeout_s: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_cycle = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timeout)

    def _cancel_head_timer(self) -> None:
        if getattr(self, "_head_timer", None) is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None and self.cycle is not self._head_cycle:  # a new request head arrived
            self._head_cycle = self.cycle
            self._cancel_head_timer()

    def on_response_complete(self) -> None:
        # armed first: uvicorn may start a pipelined request inside, which cancels it again
        self._arm_head_timer()  # the next request's head has the same deadline
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)


def protocol_class(header_timeout_s: float) -> type[HeaderTimeoutH11]:
    """:class:`HeaderTimeoutH11` with its deadline set (uvicorn instantiates the class itself)."""
    return type("HeaderTimeoutH11", (HeaderTimeoutH11,), {"header_timeout_s": float(header_timeout_s)})


def uvicorn_options(settings: ServeSettings) -> dict[str, Any]:
    """Keyword arguments of ``uvicorn.run``/``uvicorn.Config`` that apply ``settings``' connection limits."""
    return {
        "host": settings.host,
        "port": settings.port,
        "http": protocol_class(settings.header_timeout_s),
        "timeout_keep_alive": settings.keep_alive_s,
        "limit_concurrency": settings.max_connections,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "ws": "none",
        "lifespan": "on",
    }
