"""AsyncClient: the same SDK over one aiohttp session; event streams are followed, not polled."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import aiohttp

from litejobs.client.errors import PASSING, RateLimitPatience, ServerUnreachable, api_error, patience_for
from litejobs.client.sse import STREAM_READ_S, Event, Follow, SseParser
from litejobs.client.urls import DEFAULT_URL, job_path, poll_path, query_string
from litejobs.client.waiting import (
    OnChange,
    Reconnects,
    Watch,
    early_answer_pause_s,
    is_terminal,
    longest_poll_s,
    past,
    poll_s,
)


class AsyncClient:
    """`async with AsyncClient(url, api_key=None) as client:` the same methods as Client, awaited.

    One aiohttp session serves every call (pass `session=` to bring your own, which is left open).
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        timeout_s: float = 75.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout_s = timeout_s
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> AsyncClient:
        self._session_in_use()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _session_in_use(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        return self._session

    @contextlib.asynccontextmanager
    async def _send(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
        patience: RateLimitPatience | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """The answer to a request, sent again after each Retry-After that `patience` waits out (by
        default: reads, and writes under an Idempotency-Key); an error answer raises its exception."""
        patience = patience or patience_for(method, headers)
        try:
            while True:
                try:
                    resp = await self._answer(method, path, body, headers, stream)
                    break
                except PASSING as exc:
                    await asyncio.sleep(patience.pause_s(exc))
            async with resp:
                yield resp
        except (aiohttp.ClientError, TimeoutError) as exc:
            message = f"cannot reach {self.base_url}: {exc or type(exc).__name__}"
            raise ServerUnreachable(message, connected=_broken_off(exc)) from exc

    async def _answer(
        self, method: str, path: str, body: Any, headers: dict[str, str] | None, stream: bool
    ) -> aiohttp.ClientResponse:
        """The response to one request, its body unread; an error answer is read and raised as its exception."""
        sent = {"Accept": "application/json", **(headers or {})}
        if self.api_key:
            sent["Authorization"] = f"Bearer {self.api_key}"
        session = self._session_in_use()
        # a stream may last for ever: only its silences are limited
        timeout = aiohttp.ClientTimeout(total=None, sock_read=STREAM_READ_S) if stream else session.timeout
        resp = await session.request(method, self.base_url + path, json=body, headers=sent, timeout=timeout)
        if resp.status < 400:
            return resp
        async with resp:
            try:
                payload = json.loads(await resp.read() or b"null")
            except ValueError:
                payload = None
        raise api_error(resp.status, payload, resp.headers.get("Retry-After"))

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        patience: RateLimitPatience | None = None,
    ) -> Any:
        async with self._send(method, path, body, headers, patience=patience) as resp:
            return json.loads(await resp.read() or b"null")

    async def submit(self, kind: str, input: dict[str, Any], idempotency_key: str | None = None, **options: Any) -> Any:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return await self.request("POST", "/v1/jobs", {"kind": kind, "input": input, **options}, headers)

    async def submit_batch(self, jobs: Iterable[Mapping[str, Any]], idempotency_key: str | None = None) -> Any:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        body = {"jobs": [dict(job) for job in jobs]}
        return (await self.request("POST", "/v1/jobs/batch", body, headers))["jobs"]

    def _longest_poll_s(self) -> float:
        """longest_poll_s of the session's request timeout: its total or its read limit, the shorter."""
        timeout = self._session_in_use().timeout
        return longest_poll_s(min((s for s in (timeout.total, timeout.sock_read) if s), default=None))

    async def get(self, job_id: str, wait_s: float = 0) -> Any:
        """The job; with `wait_s`, as soon as it is terminal or as it is once `wait_s` has passed. A wait
        longer than one request of this client can hold is spread over several long-polls."""
        if wait_s > self._longest_poll_s():
            return await self._long_poll(job_id, time.monotonic() + wait_s, Watch(None))
        return await self.request("GET", poll_path(job_id, wait_s))

    async def wait(self, job_id: str, timeout_s: float | None = None, on_change: OnChange | None = None) -> Any:
        """The job once terminal, or as it is when `timeout_s` passes. Follows the job's event stream;
        should the stream break, long-polls instead. A server that goes away once reached (a restart)
        is tried again within a reconnect budget (waiting.Reconnects), then ServerUnreachable."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        watch = Watch(on_change)
        reconnects = Reconnects(deadline)
        try:
            async with asyncio.timeout(timeout_s):
                patience = RateLimitPatience(deadline)
                async with self._send("GET", job_path(job_id, "/events"), stream=True, patience=patience) as resp:
                    reconnects.reached()
                    parser = SseParser()
                    async for chunk in resp.content.iter_any():
                        for event in parser.feed(chunk):
                            if is_terminal(watch(event.job)):
                                return event.job
        except ServerUnreachable as exc:  # the stream broke (or never opened): the long-poll below says which
            if exc.connected:
                reconnects.reached()
        except TimeoutError:
            return watch.job or await self.request("GET", job_path(job_id), patience=RateLimitPatience(deadline))
        return await self._long_poll(job_id, deadline, watch, reconnects)

    async def _long_poll(
        self, job_id: str, deadline: float | None, watch: Watch, reconnects: Reconnects | None = None
    ) -> Any:
        """Long-polls, each answered before this client's request timeout, until the job ends or the deadline."""
        longest_s = self._longest_poll_s()
        patience = RateLimitPatience(deadline)
        reconnects = reconnects or Reconnects(deadline)
        while True:
            # a rate limit is waited out here, not in request(): the poll after the pause holds that much less
            asked_s = poll_s(deadline, longest_s)
            path, sent_at = poll_path(job_id, asked_s), time.monotonic()
            try:
                answer = await self.request("GET", path, patience=RateLimitPatience(max_resends=0))
            except PASSING as exc:
                await asyncio.sleep(patience.pause_s(exc))
                continue
            except ServerUnreachable as exc:
                await asyncio.sleep(reconnects.pause_s(exc))
                continue
            patience.answered()
            reconnects.reached()
            job = watch(answer)
            if is_terminal(job) or past(deadline):
                return job
            await asyncio.sleep(early_answer_pause_s(asked_s, time.monotonic() - sent_at, deadline))

    async def result(self, job_id: str, offset: int | None = None, limit: int | None = None) -> Any:
        return await self.request("GET", job_path(job_id, "/result") + query_string(offset=offset, limit=limit))

    async def pages(self, job_id: str, limit: int = 100) -> AsyncIterator[dict[str, Any]]:
        offset: int | None = 0
        while offset is not None:
            body = await self.result(job_id, offset=offset, limit=limit)
            for page in body.get("pages", []):
                yield page
            offset = body.get("next_offset")

    async def cancel(self, job_id: str) -> Any:
        return await self.request("DELETE", job_path(job_id))

    async def retry(self, job_id: str) -> Any:
        return await self.request("POST", job_path(job_id, "/retry"))

    async def stats(self) -> Any:
        return await self.request("GET", "/v1/stats")

    async def events(self, job_id: str | None = None) -> AsyncIterator[Event]:
        """One job's events until it ends, or all of the caller's jobs' for ever; resumes after a break
        with Last-Event-ID. Close it when done early: `async with contextlib.aclosing(...)`."""
        follow = Follow(job_id)
        while not follow.over:
            broken: ServerUnreachable | None = None
            try:
                async with self._send("GET", follow.path, headers=follow.headers(), stream=True) as resp:
                    follow.opened(resp.status)
                    if follow.over:
                        return
                    parser = SseParser()
                    async for chunk in resp.content.iter_any():
                        for event in parser.feed(chunk):
                            follow.saw(event)
                            yield event
                            if follow.over:
                                return
            except ServerUnreachable as exc:  # could not open, or broke mid-stream: resume from the last event
                broken = exc
            await asyncio.sleep(follow.broke(broken))

    async def list(
        self, status: str | None = None, kind: str | None = None, limit: int = 50
    ) -> AsyncIterator[dict[str, Any]]:
        cursor = None
        while True:
            query = query_string(status=status, kind=kind, limit=limit, cursor=cursor)
            page = await self.request("GET", "/v1/jobs" + query)
            for job in page["jobs"]:
                yield job
            cursor = page.get("next_cursor")
            if not cursor:
                return


def _broken_off(exc: Exception) -> bool:
    """Whether the server took the request and then went away (a crash, a restart), unlike a connection
    refused or timed out, which may be a wrong address."""
    if isinstance(exc, aiohttp.ClientConnectorError | TimeoutError):
        return False
    return isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | aiohttp.ClientOSError)
