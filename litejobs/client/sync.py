"""Client: the blocking SDK over urllib; every call returns the API's JSON or raises a typed error."""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from litejobs.client.errors import PASSING, RateLimitPatience, ServerUnreachable, api_error, patience_for
from litejobs.client.sse import STREAM_READ_S, Event, Follow, SseParser
from litejobs.client.transport import build_opener
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

#: how a server that took the request and then went away (a crash, a restart) ends it; a refused
#: connection comes wrapped in URLError, a timeout may be a wrong address: neither says it was reached
_BROKEN_OFF = (http.client.HTTPException, ConnectionResetError, ConnectionAbortedError)


class Client:
    """`Client("http://127.0.0.1:8000", api_key=None)`: blocking calls that return the API's JSON."""

    def __init__(self, base_url: str = DEFAULT_URL, api_key: str | None = None, timeout_s: float = 75.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        #: per request (each connect and each read); long-polls are kept shorter than it (longest_poll_s);
        #: event streams wait out silences of STREAM_READ_S instead
        self.timeout_s = timeout_s
        self._opener = build_opener()

    def _open(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        *,
        patience: RateLimitPatience | None = None,
        timeout_s: float | None = None,
    ) -> Any:
        """The open answer to a request, sent again after each Retry-After that `patience` waits out
        (by default: reads, and writes under an Idempotency-Key); an error answer raises its exception."""
        patience = patience or patience_for(method, headers)
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        while True:
            try:
                return self._open_once(method, path, body, headers, timeout_s)
            except PASSING as exc:
                time.sleep(patience.pause_s(exc))

    def _open_once(self, method: str, path: str, body: Any, headers: dict[str, str] | None, timeout_s: float) -> Any:
        data = None if body is None else json.dumps(body).encode()
        sent = {"Accept": "application/json", **(headers or {})}
        if data is not None:
            sent["Content-Type"] = "application/json"
        if self.api_key:
            sent["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=sent)
        try:
            return self._opener.open(req, timeout=timeout_s)
        except urllib.error.HTTPError as exc:
            with exc:
                raise api_error(exc.code, _error_body(exc), exc.headers.get("Retry-After")) from None
        except (OSError, ValueError, http.client.HTTPException) as exc:
            message = f"cannot reach {self.base_url}: {getattr(exc, 'reason', exc)}"
            raise ServerUnreachable(message, connected=isinstance(exc, _BROKEN_OFF)) from exc

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        patience: RateLimitPatience | None = None,
    ) -> Any:
        with self._open(method, path, body, headers, patience=patience) as resp:
            try:
                return json.loads(resp.read() or b"null")
            except (OSError, http.client.HTTPException) as exc:
                raise ServerUnreachable(f"{self.base_url} broke off its answer: {exc}", connected=True) from exc

    def submit(self, kind: str, input: dict[str, Any], idempotency_key: str | None = None, **options: Any) -> Any:
        """Submit one job; `options` are the other fields (meta, priority, max_attempts, timeout_s, ...)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self.request("POST", "/v1/jobs", {"kind": kind, "input": input, **options}, headers)

    def submit_batch(self, jobs: Iterable[Mapping[str, Any]], idempotency_key: str | None = None) -> Any:
        """Submit `[{kind, input, ...}, ...]` all or nothing; returns the job objects in order."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self.request("POST", "/v1/jobs/batch", {"jobs": [dict(job) for job in jobs]}, headers)["jobs"]

    def get(self, job_id: str, wait_s: float = 0) -> Any:
        """The job; with `wait_s`, as soon as it is terminal or as it is once `wait_s` has passed. A wait
        longer than one request of this client can hold is spread over several long-polls."""
        if wait_s > longest_poll_s(self.timeout_s):
            return self._long_poll(job_id, time.monotonic() + wait_s, Watch(None))
        return self.request("GET", poll_path(job_id, wait_s))

    def wait(self, job_id: str, timeout_s: float | None = None, on_change: OnChange | None = None) -> Any:
        """The job once terminal, or as it is when `timeout_s` passes; long-polls, never a busy loop. A
        server that goes away once reached (a restart) is tried again within a reconnect budget
        (waiting.Reconnects), then ServerUnreachable."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        return self._long_poll(job_id, deadline, Watch(on_change))

    def _long_poll(self, job_id: str, deadline: float | None, watch: Watch) -> Any:
        """Long-polls, each answered before this client's request timeout, until the job ends or the deadline."""
        longest_s = longest_poll_s(self.timeout_s)
        patience = RateLimitPatience(deadline)
        reconnects = Reconnects(deadline)
        while True:
            # a rate limit is waited out here, not in request(): the poll after the pause holds that much less
            asked_s = poll_s(deadline, longest_s)
            path, sent_at = poll_path(job_id, asked_s), time.monotonic()
            try:
                answer = self.request("GET", path, patience=RateLimitPatience(max_resends=0))
            except PASSING as exc:
                time.sleep(patience.pause_s(exc))
                continue
            except ServerUnreachable as exc:
                time.sleep(reconnects.pause_s(exc))
                continue
            patience.answered()
            reconnects.reached()
            job = watch(answer)
            if is_terminal(job) or past(deadline):
                return job
            time.sleep(early_answer_pause_s(asked_s, time.monotonic() - sent_at, deadline))

    def result(self, job_id: str, offset: int | None = None, limit: int | None = None) -> Any:
        return self.request("GET", job_path(job_id, "/result") + query_string(offset=offset, limit=limit))

    def pages(self, job_id: str, limit: int = 100) -> Iterator[dict[str, Any]]:
        """Every page of a multi-page (crawl) result, `limit` per request; none for a one-page job."""
        offset: int | None = 0
        while offset is not None:
            body = self.result(job_id, offset=offset, limit=limit)
            yield from body.get("pages", [])
            offset = body.get("next_offset")

    def cancel(self, job_id: str) -> Any:
        return self.request("DELETE", job_path(job_id))

    def retry(self, job_id: str) -> Any:
        return self.request("POST", job_path(job_id, "/retry"))

    def stats(self) -> Any:
        return self.request("GET", "/v1/stats")

    def events(self, job_id: str | None = None) -> Iterator[Event]:
        """One job's events until it ends, or all of the caller's jobs' for ever; resumes after a break.
        Silences up to STREAM_READ_S are waited out, whatever this client's request timeout."""
        follow = Follow(job_id)
        while not follow.over:
            broken: ServerUnreachable | None = None
            try:
                with self._open("GET", follow.path, headers=follow.headers(), timeout_s=STREAM_READ_S) as resp:
                    follow.opened(resp.status)
                    if follow.over:
                        return
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
            page = self.request("GET", "/v1/jobs" + query_string(status=status, kind=kind, limit=limit, cursor=cursor))
            yield from page["jobs"]
            cursor = page.get("next_cursor")
            if not cursor:
                return


def _error_body(exc: urllib.error.HTTPError) -> Any:
    """The JSON of an error answer; None when it is not JSON or was cut off (RemoteError then keeps the status)."""
    try:
        return json.loads(exc.read() or b"null")
    except (ValueError, OSError, http.client.HTTPException):
        return None
