"""The Python SDK: a small synchronous client for the native API (stdlib only; imports only jobs and errors)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from litejobs import errors
from litejobs.jobs import TERMINAL, JobState

_ERRORS: dict[str, type[errors.ApiError]] = {
    cls.code: cls
    for cls in (
        errors.InvalidJson, errors.Unauthorized, errors.Forbidden, errors.NotFound, errors.IdempotencyConflict,
        errors.JobFinished, errors.ResultNotAvailable, errors.PayloadTooLarge, errors.UnsupportedMediaType,
        errors.UnsupportedKind, errors.QueueFull, errors.QueueDisabled, errors.ShuttingDown, errors.StorageFull,
        errors.SyncTimeout,
    )
}  # fmt: skip


class ServerUnreachable(errors.LitejobsError):
    """The litejobs server could not be reached."""

    code = "unreachable"


class RemoteError(errors.ApiError):
    """The server answered with an error this client has no class for."""


def _raise_for(status: int, body: Any) -> None:
    error = body.get("error", {}) if isinstance(body, dict) else {}
    code, message = error.get("code", "http_error"), error.get("message") or f"HTTP {status}"
    if code == "validation_error":
        raise errors.ValidationFailed(error.get("details") or [], message)
    if code == "rate_limited":
        raise errors.RateLimited(message=message)
    cls = _ERRORS.get(code, RemoteError)
    exc = cls(message)
    exc.status = status  # type: ignore[attr-defined]
    if cls is RemoteError:
        exc.code = code
    raise exc


class Client:
    """`Client("http://127.0.0.1:8000", api_key=None)`; methods return the API's JSON as dicts."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", api_key: str | None = None, timeout_s: float = 75):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout_s = timeout_s

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        all_headers = {"Accept": "application/json", **(headers or {})}
        if data is not None:
            all_headers["Content-Type"] = "application/json"
        if self.api_key:
            all_headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=all_headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                payload = json.loads(exc.read() or b"null")
            except ValueError:
                payload = None
            _raise_for(exc.code, payload)
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            raise ServerUnreachable(f"cannot reach {self.base_url}: {getattr(exc, 'reason', exc)}") from None

    def submit(self, kind: str, input: dict[str, Any], idempotency_key: str | None = None, **options: Any) -> Any:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self.request("POST", "/v1/jobs", {"kind": kind, "input": input, **options}, headers)

    def get(self, job_id: str, wait_s: float = 0) -> Any:
        query = f"?wait={wait_s:g}" if wait_s else ""
        return self.request("GET", f"/v1/jobs/{urllib.parse.quote(job_id)}{query}")

    def wait(self, job_id: str, timeout_s: float | None = None) -> Any:
        """Long-poll (never a busy loop) until the job is terminal or `timeout_s` passes."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            remaining = 60.0 if deadline is None else min(60.0, deadline - time.monotonic())
            job = self.get(job_id, wait_s=max(0.0, remaining))
            if JobState(job["status"]) in TERMINAL or (deadline is not None and time.monotonic() >= deadline):
                return job

    def result(self, job_id: str) -> Any:
        return self.request("GET", f"/v1/jobs/{urllib.parse.quote(job_id)}/result")

    def cancel(self, job_id: str) -> Any:
        return self.request("DELETE", f"/v1/jobs/{urllib.parse.quote(job_id)}")

    def retry(self, job_id: str) -> Any:
        return self.request("POST", f"/v1/jobs/{urllib.parse.quote(job_id)}/retry")

    def list(self, status: str | None = None, kind: str | None = None, limit: int = 50) -> Any:
        """Every matching job, newest first, following cursors page by page."""
        cursor = None
        while True:
            query = {k: v for k, v in (("status", status), ("kind", kind), ("cursor", cursor)) if v}
            query["limit"] = str(limit)
            page = self.request("GET", "/v1/jobs?" + urllib.parse.urlencode(query))
            yield from page["jobs"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def stats(self) -> Any:
        return self.request("GET", "/v1/stats")
