"""The Python SDK: `Client` (sync, urllib) and `AsyncClient` (aiohttp) for the native API.

Both have the same methods and raise the same typed errors: each error code of the API is its class
in litejobs.errors, and a server that cannot be reached is `ServerUnreachable`. This module imports
only litejobs.jobs and litejobs.errors from the package, so it can be lifted out with them.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp

from litejobs import errors
from litejobs.jobs import TERMINAL

__all__ = ["AsyncClient", "Client", "Event", "RemoteError", "ServerUnreachable"]

DEFAULT_URL = "http://127.0.0.1:8000"
#: the server holds `?wait=` at most this long
MAX_WAIT_S = 60.0
#: an event stream sends a keep-alive every 15 s; three missed ones mean the stream is dead
STREAM_READ_S = 45.0

OnChange = Callable[[dict[str, Any]], None]

_ERRORS: dict[str, type[errors.ApiError]] = {
    cls.code: cls
    for cls in (
        errors.InvalidJson, errors.Unauthorized, errors.Forbidden, errors.NotFound, errors.IdempotencyConflict,
        errors.JobFinished, errors.ResultNotAvailable, errors.PayloadTooLarge, errors.UnsupportedMediaType,
        errors.ValidationFailed, errors.UnsupportedKind, errors.QueueFull, errors.RateLimited,
        errors.QueueDisabled, errors.ShuttingDown, errors.StorageFull, errors.SyncTimeout,
    )
}  # fmt: skip


class ServerUnreachable(errors.LitejobsError):
    """The litejobs server could not be reached."""

    code = "unreachable"


class RemoteError(errors.ApiError):
    """The server answered with an error this client has no class for."""


def retry_after_s(header: str | None) -> float | None:
    """A Retry-After header (seconds, or an HTTP date) as seconds from now."""
    if not header:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(header))
    try:
        moment = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def api_error(status: int, body: Any, retry_after: str | None = None) -> errors.ApiError:
    """The typed exception for an error answer; it carries `status`, `details` and `request_id`."""
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    code = str(error.get("code") or "http_error")
    message = str(error.get("message") or f"HTTP {status}")
    details = error.get("details") if isinstance(error.get("details"), list) else []
    cls = _ERRORS.get(code, RemoteError)
    if cls is errors.ValidationFailed:
        exc: errors.ApiError = errors.ValidationFailed(details, message)
    elif cls is errors.RateLimited:
        exc = errors.RateLimited(message=message)
    else:
        exc = cls(message)
    exc.code, exc.details = code, details
    exc.status = status  # type: ignore[attr-defined]
    exc.request_id = body.get("request_id") if isinstance(body, dict) else None  # type: ignore[attr-defined]
    seconds = retry_after_s(retry_after)
    if seconds is not None:
        exc.retry_after_s = seconds
    return exc


def is_terminal(job: Mapping[str, Any]) -> bool:
    return job.get("status") in TERMINAL  # JobState is a str enum: "failed" in TERMINAL


def _job_path(job_id: str, suffix: str = "") -> str:
    return f"/v1/jobs/{urllib.parse.quote(job_id, safe='')}{suffix}"


def _query(**params: Any) -> str:
    given = {name: value for name, value in params.items() if value is not None}
    return "?" + urllib.parse.urlencode(given) if given else ""


def _poll_s(deadline: float | None) -> float:
    """How long the next long-poll may hold: at most the server's cap, never past the deadline."""
    return MAX_WAIT_S if deadline is None else max(0.0, min(MAX_WAIT_S, deadline - time.monotonic()))


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


@dataclass(frozen=True)
class Event:
    """One Server-Sent Event: `type` is `status` or `progress`; `job` is the job as it then was."""

    type: str
    job: dict[str, Any]
    id: str | None = None


class SseParser:
    """Bytes of a text/event-stream in, whole events out; comments (keep-alives) are skipped."""

    def __init__(self) -> None:
        self._buffer = b""
        self._fields: dict[str, str] = {}
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[Event]:
        *lines, self._buffer = (self._buffer + chunk).split(b"\n")
        events = []
        for raw in lines:
            line = raw.rstrip(b"\r").decode()
            if not line:
                event = self._dispatch()
                if event is not None:
                    events.append(event)
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "data":
                    self._data.append(value)
                elif name in ("event", "id"):
                    self._fields[name] = value
        return events

    def _dispatch(self) -> Event | None:
        fields, data = self._fields, "\n".join(self._data)
        self._fields, self._data = {}, []
        try:
            job = json.loads(data)
        except ValueError:
            return None
        return Event(fields.get("event", "message"), job, fields.get("id")) if isinstance(job, dict) else None


class _Follow:
    """A followed event stream across reconnects: the Last-Event-ID to resume from, and when to stop."""

    #: consecutive failed reconnects before giving up
    MAX_FAILURES = 6

    def __init__(self, job_id: str | None) -> None:
        self.job_id = job_id
        self.path = _job_path(job_id, "/events") if job_id else "/v1/events"
        self.last_id: str | None = None
        self.over = False
        self.connected = False
        self.failures = 0

    def headers(self) -> dict[str, str]:
        resume = {"Last-Event-ID": self.last_id} if self.last_id else {}
        return {"Accept": "text/event-stream", **resume}

    def opened(self) -> None:
        self.connected, self.failures = True, 0

    def saw(self, event: Event) -> None:
        self.last_id = event.id or self.last_id
        self.over = self.job_id is not None and is_terminal(event.job)

    def broke(self, exc: ServerUnreachable | None) -> float:
        """The pause before reconnecting; raises when the server was never reached or stays away."""
        self.failures += 1
        if exc is not None and (not self.connected or self.failures > self.MAX_FAILURES):
            raise exc
        return min(5.0, 0.5 * 2 ** (self.failures - 1))


class _Watch:
    """The latest job seen while waiting; `on_change` hears of each new snapshot once."""

    def __init__(self, on_change: OnChange | None) -> None:
        self.job: dict[str, Any] | None = None
        self.on_change = on_change

    def __call__(self, job: dict[str, Any]) -> dict[str, Any]:
        new = self.job is None or (job["status"], job["updated_at"]) != (self.job["status"], self.job["updated_at"])
        self.job = job
        if new and self.on_change is not None:
            self.on_change(job)
        return job


class Client:
    """`Client("http://127.0.0.1:8000", api_key=None)`: blocking calls that return the API's JSON."""

    def __init__(self, base_url: str = DEFAULT_URL, api_key: str | None = None, timeout_s: float = 75.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        #: per request; above MAX_WAIT_S so that a long-poll is answered before it
        self.timeout_s = timeout_s

    def _open(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        sent = {"Accept": "application/json", **(headers or {})}
        if data is not None:
            sent["Content-Type"] = "application/json"
        if self.api_key:
            sent["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=sent)
        try:
            return urllib.request.urlopen(req, timeout=self.timeout_s)
        except urllib.error.HTTPError as exc:
            with exc:
                try:
                    payload = json.loads(exc.read() or b"null")
                except ValueError:
                    payload = None
                raise api_error(exc.code, payload, exc.headers.get("Retry-After")) from None
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise ServerUnreachable(f"cannot reach {self.base_url}: {getattr(exc, 'reason', exc)}") from exc

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        with self._open(method, path, body, headers) as resp:
            try:
                return json.loads(resp.read() or b"null")
            except (OSError, http.client.HTTPException) as exc:
                raise ServerUnreachable(f"{self.base_url} broke off its answer: {exc}") from exc

    def submit(self, kind: str, input: dict[str, Any], idempotency_key: str | None = None, **options: Any) -> Any:
        """Submit one job; `options` are the other fields (meta, priority, max_attempts, timeout_s, ...)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self.request("POST", "/v1/jobs", {"kind": kind, "input": input, **options}, headers)

    def submit_batch(self, jobs: Iterable[Mapping[str, Any]], idempotency_key: str | None = None) -> Any:
        """Submit `[{kind, input, ...}, ...]` all or nothing; returns the job objects in order."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self.request("POST", "/v1/jobs/batch", {"jobs": [dict(job) for job in jobs]}, headers)["jobs"]

    def get(self, job_id: str, wait_s: float = 0) -> Any:
        return self.request("GET", _job_path(job_id) + (f"?wait={wait_s:.3f}" if wait_s > 0 else ""))

    def wait(self, job_id: str, timeout_s: float | None = None, on_change: OnChange | None = None) -> Any:
        """The job once terminal, or as it is when `timeout_s` passes; long-polls, never a busy loop."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        watch = _Watch(on_change)
        while True:
            job = watch(self.get(job_id, wait_s=_poll_s(deadline)))
            if is_terminal(job) or _past(deadline):
                return job

    def result(self, job_id: str, offset: int | None = None, limit: int | None = None) -> Any:
        return self.request("GET", _job_path(job_id, "/result") + _query(offset=offset, limit=limit))

    def pages(self, job_id: str, limit: int = 100) -> Iterator[dict[str, Any]]:
        """Every page of a multi-page (crawl) result, `limit` per request; none for a one-page job."""
        offset: int | None = 0
        while offset is not None:
            body = self.result(job_id, offset=offset, limit=limit)
            yield from body.get("pages", [])
            offset = body.get("next_offset")

    def cancel(self, job_id: str) -> Any:
        return self.request("DELETE", _job_path(job_id))

    def retry(self, job_id: str) -> Any:
        return self.request("POST", _job_path(job_id, "/retry"))

    def stats(self) -> Any:
        return self.request("GET", "/v1/stats")

    def events(self, job_id: str | None = None) -> Iterator[Event]:
        """One job's events until it ends, or all of the caller's jobs' for ever; resumes after a break."""
        follow = _Follow(job_id)
        while not follow.over:
            broken: ServerUnreachable | None = None
            try:
                with self._open("GET", follow.path, headers=follow.headers()) as resp:
                    follow.opened()
                    parser = SseParser()
                    for line in resp:
                        for event in parser.feed(line):
                            follow.saw(event)
                            yield event
                            if follow.over:
                                return
            except ServerUnreachable as exc:
                broken = exc
            except (OSError, http.client.HTTPException):
                pass  # the stream broke: resume from the last event
            time.sleep(follow.broke(broken))

    def list(self, status: str | None = None, kind: str | None = None, limit: int = 50) -> Iterator[dict[str, Any]]:
        """Every matching job, newest first, fetched `limit` per page by following cursors."""
        cursor = None
        while True:
            page = self.request("GET", "/v1/jobs" + _query(status=status, kind=kind, limit=limit, cursor=cursor))
            yield from page["jobs"]
            cursor = page.get("next_cursor")
            if not cursor:
                return


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
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None, stream: bool = False
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        sent = {"Accept": "application/json", **(headers or {})}
        if self.api_key:
            sent["Authorization"] = f"Bearer {self.api_key}"
        session = self._session_in_use()
        # a stream may last for ever: only its silences are limited
        timeout = aiohttp.ClientTimeout(total=None, sock_read=STREAM_READ_S) if stream else session.timeout
        try:
            async with session.request(method, self.base_url + path, json=body, headers=sent, timeout=timeout) as resp:
                if resp.status >= 400:
                    try:
                        payload = json.loads(await resp.read() or b"null")
                    except ValueError:
                        payload = None
                    raise api_error(resp.status, payload, resp.headers.get("Retry-After"))
                yield resp
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ServerUnreachable(f"cannot reach {self.base_url}: {exc or type(exc).__name__}") from exc

    async def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        async with self._send(method, path, body, headers) as resp:
            return json.loads(await resp.read() or b"null")

    async def submit(self, kind: str, input: dict[str, Any], idempotency_key: str | None = None, **options: Any) -> Any:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return await self.request("POST", "/v1/jobs", {"kind": kind, "input": input, **options}, headers)

    async def submit_batch(self, jobs: Iterable[Mapping[str, Any]], idempotency_key: str | None = None) -> Any:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        body = {"jobs": [dict(job) for job in jobs]}
        return (await self.request("POST", "/v1/jobs/batch", body, headers))["jobs"]

    async def get(self, job_id: str, wait_s: float = 0) -> Any:
        return await self.request("GET", _job_path(job_id) + (f"?wait={wait_s:.3f}" if wait_s > 0 else ""))

    async def wait(self, job_id: str, timeout_s: float | None = None, on_change: OnChange | None = None) -> Any:
        """The job once terminal, or as it is when `timeout_s` passes. Follows the job's event stream;
        should the stream break, long-polls instead."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        watch = _Watch(on_change)
        try:
            async with asyncio.timeout(timeout_s):
                async with self._send("GET", _job_path(job_id, "/events"), stream=True) as resp:
                    parser = SseParser()
                    async for chunk in resp.content.iter_any():
                        for event in parser.feed(chunk):
                            if is_terminal(watch(event.job)):
                                return event.job
        except ServerUnreachable:
            pass  # the stream broke (or never opened): the long-poll below says which
        except TimeoutError:
            return watch.job or await self.get(job_id)
        while True:
            job = watch(await self.get(job_id, wait_s=_poll_s(deadline)))
            if is_terminal(job) or _past(deadline):
                return job

    async def result(self, job_id: str, offset: int | None = None, limit: int | None = None) -> Any:
        return await self.request("GET", _job_path(job_id, "/result") + _query(offset=offset, limit=limit))

    async def pages(self, job_id: str, limit: int = 100) -> AsyncIterator[dict[str, Any]]:
        offset: int | None = 0
        while offset is not None:
            body = await self.result(job_id, offset=offset, limit=limit)
            for page in body.get("pages", []):
                yield page
            offset = body.get("next_offset")

    async def cancel(self, job_id: str) -> Any:
        return await self.request("DELETE", _job_path(job_id))

    async def retry(self, job_id: str) -> Any:
        return await self.request("POST", _job_path(job_id, "/retry"))

    async def stats(self) -> Any:
        return await self.request("GET", "/v1/stats")

    async def events(self, job_id: str | None = None) -> AsyncIterator[Event]:
        """One job's events until it ends, or all of the caller's jobs' for ever; resumes after a break
        with Last-Event-ID. Close it when done early: `async with contextlib.aclosing(...)`."""
        follow = _Follow(job_id)
        while not follow.over:
            broken: ServerUnreachable | None = None
            try:
                async with self._send("GET", follow.path, headers=follow.headers(), stream=True) as resp:
                    follow.opened()
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
            query = _query(status=status, kind=kind, limit=limit, cursor=cursor)
            page = await self.request("GET", "/v1/jobs" + query)
            for job in page["jobs"]:
                yield job
            cursor = page.get("next_cursor")
            if not cursor:
                return
