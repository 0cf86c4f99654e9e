"""The client's errors: each error code of the API is its class in litejobs.errors; Retry-After in seconds."""

from __future__ import annotations

import contextlib
import email.utils
from datetime import UTC, datetime
from typing import Any

from litejobs import errors

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
