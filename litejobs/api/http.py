"""Request parsing shared by every route: JSON bodies within limits, the caller, the job shapes."""

from __future__ import annotations

import re
import secrets
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from litejobs import jsontext
from litejobs.errors import InvalidJson, PayloadTooLarge, UnsupportedMediaType, ValidationFailed
from litejobs.jobs import Attempt, Job, JobResult, iso_ms

if TYPE_CHECKING:
    from litejobs.app import App

UTF8_BOM = b"\xef\xbb\xbf"
#: a client's X-Request-Id worth keeping: ASCII letters, digits, `-` and `_` (litejobs' own `req_…`
#: ids, forwarded by another node, and snake_case ids), one letter or digit at least. Matched only
#: once the id is known to be at most 64 characters: the pattern backtracks on long runs of `-`.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9_-]*[A-Za-z0-9][A-Za-z0-9_-]*")


def app_of(request: Request) -> App:
    return request.app.state.litejobs  # type: ignore[no-any-return]


async def read_json(request: Request, *, allow_empty: bool = False) -> Any:
    """The body as JSON: 415 unless it says JSON, 413 past limits.max_request_bytes, 400 if broken."""
    limit = app_of(request).config.limits.max_request_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is {declared} bytes; the limit is {limit} (limits.max_request_bytes)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is over {limit} bytes (limits.max_request_bytes)")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        if allow_empty:
            return {}
        raise InvalidJson("the request body is empty; send a JSON object")
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if content_type not in ("application/json", "text/json") and not content_type.endswith("+json"):
        raise UnsupportedMediaType(f"Content-Type {content_type!r} is not JSON; send application/json")
    if raw.startswith(UTF8_BOM):  # RFC 8259 lets a parser ignore it; some Windows clients send one
        raw = raw[len(UTF8_BOM) :]
    try:
        return jsontext.parse(raw)
    except jsontext.JSONDecodeError as exc:
        raise InvalidJson(f"the request body is not valid JSON: {_problem(exc)}") from None


def _problem(exc: ValueError) -> str:
    """orjson's message in plain words: NaN, infinities and broken text are named as such."""
    message = str(exc)
    if "depth limit" in message:
        return f"it is nested too deeply (at most {jsontext.MAX_DEPTH} levels of arrays and objects)"
    if "not valid UTF-8" in message or "surrogate" in message:
        return f"its text is not valid UTF-8 (a lone surrogate escape, or bytes that are not UTF-8): {message}"
    if "infinity" in message:
        return f"a number is too large for a 64-bit float: {message}"
    return message


def query_number(request: Request, name: str, default: float, low: float, high: float) -> float:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValidationFailed([{"field": name, "problem": "must be a number"}]) from None
    if not low <= value <= high:
        raise ValidationFailed([{"field": name, "problem": f"must be from {low:g} to {high:g}"}])
    return value


def job_body(job: Job) -> dict[str, Any]:
    base = f"/v1/jobs/{job.id}"
    return {
        "job_id": job.id,
        "kind": job.kind,
        "status": job.status.value,
        "input": job.input,
        "meta": job.meta,
        "priority": job.priority,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "timeout_s": job.timeout_s,
        "progress": job.progress,
        "error": job.error,
        "result_available": job.result_available,
        "created_at": iso_ms(job.created_at),
        "started_at": iso_ms(job.started_at),
        "updated_at": iso_ms(job.updated_at),
        "completed_at": iso_ms(job.completed_at),
        "run_at": iso_ms(job.run_at),
        "expires_at": iso_ms(job.expires_at),
        "links": {"self": base, "result": f"{base}/result", "events": f"{base}/events"},
    }


def public_page(page: dict[str, Any]) -> dict[str, Any]:
    """A stored page as clients see it: keys starting with `_` are the kind's own (a crawl's resume
    links) and stay inside."""
    return {k: v for k, v in page.items() if not k.startswith("_")}


def attempt_body(attempt: Attempt) -> dict[str, Any]:
    """One attempt of a job, for its timeline: outcome is completed, partial, failed, retry,
    cancelled or lost (its worker died); null while it runs. `run` is 1, then one more per retry."""
    return {
        "run": attempt.run,
        "attempt": attempt.number,
        "started_at": iso_ms(attempt.started_at),
        "ended_at": iso_ms(attempt.ended_at),
        "outcome": attempt.outcome,
        "error": attempt.error,
    }


def result_body(job: Job, result: JobResult) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "kind": job.kind,
        "status": job.status.value,
        "outputs": result.outputs,
        "stats": result.stats,
    }


class RequestIdMiddleware:
    """Gives each request an id (or keeps a sane X-Request-Id from the client) and echoes it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._prefix = secrets.token_hex(4)
        self._count = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if len(given) <= 64 and _SANE_REQUEST_ID.fullmatch(given) else ""
        if not request_id:
            # ids only correlate log lines, they guard nothing: a counter under a per-process
            # random prefix is unique and spares an os.urandom call per request
            self._count += 1
            request_id = f"req_{self._prefix}{self._count:08x}"
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        await self.app(scope, receive, send_with_id)
