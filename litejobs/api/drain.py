"""How open HTTP requests end when the server stops: event streams at once, the rest by the grace's end."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from litejobs.api.errors import error_response
from litejobs.engine import shutdown_refusal


class _Exchange:
    """One HTTP request as a stop sees it: whether its answer started, ended, and is an event stream."""

    def __init__(self, send: Send, deadline: asyncio.Timeout, drain: HttpDrain) -> None:
        self._send = send
        self.deadline = deadline
        self._drain = drain
        self.started = self.complete = self.streams = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            self.streams = (b"content-type", b"text/event-stream") in [
                (name.lower(), value.split(b";")[0].strip()) for name, value in message.get("headers", [])
            ]
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self.complete = True
        await self._send(message)
        if self.streams and self._drain.stopping:
            self.end_by(asyncio.get_running_loop().time())  # a stream opened as the stop began

    def end_by(self, when: float) -> None:
        if not self.deadline.expired():  # else it is ending already
            self.deadline.reschedule(when)


class HttpDrain:
    """How open requests end at a stop, before uvicorn's own timeout cancels them into a bare 500:
    an event stream at once and cleanly (its client reconnects, to the restarted server or another
    node, and resumes with Last-Event-ID); any other request by the end of the grace, answered
    `503 shutting_down` if it has not answered by then (an inline scrape)."""

    def __init__(self) -> None:
        self._open: set[_Exchange] = set()
        self._ends_at: float | None = None  # loop time

    @property
    def stopping(self) -> bool:
        return self._ends_at is not None

    def begin(self, grace_s: float) -> None:
        now = asyncio.get_running_loop().time()
        self._ends_at = now + grace_s
        for exchange in self._open:
            exchange.end_by(now if exchange.streams else self._ends_at)

    def middleware(self, app: ASGIApp) -> ASGIApp:
        async def drained(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            deadline = asyncio.timeout_at(self._ends_at)
            exchange = _Exchange(send, deadline, self)
            self._open.add(exchange)
            try:
                async with deadline:
                    await app(scope, receive, exchange.send)
            except TimeoutError:
                if not deadline.expired():
                    raise  # the handler's own
                await self._end(exchange, scope, receive)
            finally:
                self._open.discard(exchange)

        return drained

    @staticmethod
    async def _end(exchange: _Exchange, scope: Scope, receive: Receive) -> None:
        if not exchange.started:
            exc = shutdown_refusal("the server is shutting down and could not answer this request in time")
            await error_response(Request(scope, receive), exc)(scope, receive, exchange.send)
        elif exchange.streams and not exchange.complete:
            await exchange.send({"type": "http.response.body", "body": b"", "more_body": False})
        # a body of a declared length cut short can only be cut: uvicorn closes the connection
