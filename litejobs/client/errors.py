"""The client's errors: each error code of the API is its class in litejobs.errors; Retry-After in seconds,
and how long a call waits out `429 rate_limited` and `503 store_unavailable` before raising them."""

from __future__ import annotations

import contextlib
import email.utils
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from litejobs import errors

#: how many times in a row one call sends a rate-limited request again before raising RateLimited
MAX_RESENDS = 5
#: the longest Retry-After a call waits out; past it RateLimited is raised at once, for the caller to plan
MAX_RETRY_AFTER_S = 30.0

_ERRORS: dict[str, type[errors.ApiError]] = {
    cls.code: cls
    for cls in (
        errors.InvalidJson, errors.Unauthorized, errors.Forbidden, errors.NotFound, errors.IdempotencyConflict,
        errors.JobFinished, errors.ResultNotAvailable, errors.PayloadTooLarge, errors.UnsupportedMediaType,
        errors.ValidationFailed, errors.UnsupportedKind, errors.QueueFull, errors.RateLimited,
        errors.QueueDisabled, errors.ShuttingDown, errors.StorageFull, errors.SyncTimeout, errors.StoreUnavailable,
    )
}  # fmt: skip


class ServerUnreachable(errors.LitejobsError):
    """The litejobs server could not be reached."""

    code = "unreachable"

    def __init__(self, message: str | None = None, connected: bool = False) -> None:
        super().__init__(message)
        #: the server took the request, then broke off (a crash or a restart): it was reached, unlike a
        #: refused or timed-out connection, which may be a wrong URL (waiting.Reconnects tells them apart)
        self.connected = connected


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


def may_resend(method: str, headers: Mapping[str, str] | None) -> bool:
    """Whether a rate-limited request may be sent again unasked: a read, or a write under an
    Idempotency-Key, whose replay the server recognises. Other writes go back to the caller, so that a
    client never sends one twice on its own and the caller decides when (and whether) it goes in."""
    return method == "GET" or bool(headers and headers.get("Idempotency-Key"))


#: answers that say "not now, try again after Retry-After": `429 rate_limited`, and `503
#: store_unavailable` (the server's database is away for a moment, e.g. a PostgreSQL restart)
PASSING: tuple[type[errors.ApiError], ...] = (errors.RateLimited, errors.StoreUnavailable)


class RateLimitPatience:
    """How long one call waits out a PASSING answer: each Retry-After up to MAX_RETRY_AFTER_S,
    `max_resends` times in a row, and never past the caller's `deadline` (time.monotonic())."""

    def __init__(self, deadline: float | None = None, max_resends: int = MAX_RESENDS) -> None:
        self.deadline = deadline
        self.max_resends = max_resends
        self.resends = 0

    def pause_s(self, exc: errors.ApiError) -> float:
        """The pause before sending the request again; raises `exc` when it is not PASSING, or when
        waiting it out would take too long, too often, or past the deadline."""
        if not isinstance(exc, PASSING) or self.resends >= self.max_resends:
            raise exc
        pause_s = exc.retry_after_s
        late = self.deadline is not None and time.monotonic() + pause_s > self.deadline
        if pause_s > MAX_RETRY_AFTER_S or late:
            raise exc
        self.resends += 1
        return pause_s

    def answered(self) -> None:
        """The request went through: the next rate limit starts a fresh count."""
        self.resends = 0


def patience_for(method: str, headers: Mapping[str, str] | None) -> RateLimitPatience:
    """The patience of a plain call: none for a write that may not be sent again."""
    return RateLimitPatience(max_resends=MAX_RESENDS if may_resend(method, headers) else 0)
