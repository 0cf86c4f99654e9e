"""The exception tree of litejobs; each docstring is that error's default message.

LitejobsError
├── ConfigError                    bad or unknown configuration (stops the server at start)
├── ApiError                       answered to an HTTP client; api/errors.py maps class → status
│   ├── InvalidJson                400
│   ├── Unauthorized               401
│   ├── Forbidden                  403
│   ├── NotFound                   404
│   ├── IdempotencyConflict        409
│   ├── JobFinished                409
│   │   └── JobNotRetryable        409 job_finished: a retry of a job that is not failed or cancelled
│   ├── ResultNotAvailable         409
│   ├── PayloadTooLarge            413
│   ├── UnsupportedMediaType       415
│   ├── ValidationFailed           422 (details: [{field, problem}])
│   ├── UnsupportedKind            422
│   ├── QueueFull                  429 (retry_after_s)
│   ├── RateLimited                429 (retry_after_s)
│   ├── QueueDisabled              503
│   ├── ShuttingDown               503
│   ├── StoreUnavailable           503 (retry_after_s): the database cannot be reached (or opened, at start)
│   ├── StorageFull                507
│   └── SyncTimeout                504
└── JobError                       a job attempt failed; `code` lands in job.error.code
    ├── FetchError                 the target could not be fetched (retryable unless said)
    │   ├── FetchTimeout           code timeout
    │   ├── NetworkError           code network_error
    │   ├── UpstreamStatus         code upstream_status (5xx, 429)
    │   ├── BodyTooLarge           code body_too_large (not retryable)
    │   ├── TooManyRedirects       code too_many_redirects (not retryable)
    │   ├── BlockedAddress         code blocked_address (not retryable)
    │   └── RobotsDisallowed       code robots_disallowed (not retryable)
    ├── BrowserError               code browser_error
    │   ├── BrowserUnavailable     code browser_unavailable (not retryable)
    │   └── BrowserCrashed         code browser_crashed (retryable)
    ├── ActionFailed               code action_failed (not retryable)
    ├── JobTimeout                 code timeout
    └── WorkerLost                 code worker_lost
"""

from __future__ import annotations

from typing import Any


class LitejobsError(Exception):
    """Something went wrong in litejobs."""

    code = "internal_error"

    def __init__(self, message: str | None = None) -> None:
        self.message = message or (type(self).__doc__ or "").strip()
        super().__init__(self.message)


class ConfigError(LitejobsError):
    """The configuration is invalid."""

    code = "config_error"


class ApiError(LitejobsError):
    """The request could not be served."""

    code = "bad_request"
    details: list[dict[str, Any]] = []
    retry_after_s: float | None = None


class InvalidJson(ApiError):
    """The request body is not valid JSON."""

    code = "invalid_json"


class Unauthorized(ApiError):
    """An API key is required: send `Authorization: Bearer KEY`, `X-API-Key: KEY` or `?api_key=KEY`."""

    code = "unauthorized"


class Forbidden(ApiError):
    """This job belongs to another API key."""

    code = "forbidden"


class NotFound(ApiError):
    """No such job: it never existed or its results have expired."""

    code = "not_found"


class IdempotencyConflict(ApiError):
    """This Idempotency-Key was already used with a different request body."""

    code = "idempotency_conflict"


class JobFinished(ApiError):
    """The job has already finished and cannot be cancelled."""

    code = "job_finished"


class JobNotRetryable(JobFinished):
    """Only failed or cancelled jobs can be retried."""

    # API.md's 409 codes have none for "not finished yet": its code stays job_finished (what clients
    # branch on), and the message says what the job is

    @classmethod
    def because(cls, status: str) -> JobNotRetryable:
        if status in ("waiting", "delayed", "active"):
            why = "it has not finished (cancel it first, or wait for it to end)"
        else:
            why = "it has its result (submit it again to run it anew)"
        return cls(f"only failed or cancelled jobs can be retried; this one is {status}: {why}")


class ResultNotAvailable(ApiError):
    """The job has no result yet: poll GET /v1/jobs/{id} until it is completed or partial."""

    code = "result_not_available"


class PayloadTooLarge(ApiError):
    """The request body is larger than limits.max_request_bytes."""

    code = "payload_too_large"


class UnsupportedMediaType(ApiError):
    """Send the request body as JSON with `Content-Type: application/json`."""

    code = "unsupported_media_type"


class ValidationFailed(ApiError):
    """The request is not valid; see details."""

    code = "validation_error"

    def __init__(self, details: list[dict[str, Any]], message: str | None = None) -> None:
        self.details = details
        if message is None and details:
            first = details[0]
            message = f"{first['field']}: {first['problem']}"
        super().__init__(message)


class UnsupportedKind(ApiError):
    """Unknown job kind."""

    code = "unsupported_kind"


class QueueFull(ApiError):
    """The queue is full (queue.max_depth); retry after the Retry-After delay."""

    code = "queue_full"
    retry_after_s = 5.0


class RateLimited(ApiError):
    """Too many requests for this API key; retry after the Retry-After delay."""

    code = "rate_limited"

    def __init__(self, retry_after_s: float = 1.0, message: str | None = None) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message)


class QueueDisabled(ApiError):
    """The job queue is disabled on this server (queue.enabled = false): use the synchronous POST /v1/scrape."""

    code = "queue_disabled"


class ShuttingDown(ApiError):
    """The server is shutting down and accepts no new jobs; retry against the restarted server."""

    code = "shutting_down"


class StoreUnavailable(ApiError):
    """The database cannot be reached right now; retry after the Retry-After delay."""

    code = "store_unavailable"
    retry_after_s = 5.0

    @classmethod
    def opening(cls, where: str, exc: BaseException) -> StoreUnavailable:
        """The error a server stops on at start: which database, and why, in one line."""
        reason = exc.message if isinstance(exc, LitejobsError) else (str(exc) or type(exc).__name__)
        return cls(f"cannot open the database {where}: {reason}")


class StorageFull(ApiError):
    """The server's disk is full, so this change was not stored. Retry once space is freed."""

    code = "storage_full"


class SyncTimeout(ApiError):
    """The scrape did not finish within limits.sync_timeout_s: submit it as a job with POST /v1/scrape/async."""

    code = "sync_timeout"


class JobError(LitejobsError):
    """The job failed."""

    code = "job_error"
    retryable = False

    def __init__(self, message: str | None = None, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable


class FetchError(JobError):
    """The target could not be fetched."""

    code = "fetch_error"
    retryable = True


class FetchTimeout(FetchError):
    """The target did not answer within the fetch timeout."""

    code = "timeout"


class NetworkError(FetchError):
    """The connection to the target failed."""

    code = "network_error"


class UpstreamStatus(FetchError):
    """The target answered with a server error."""

    code = "upstream_status"

    def __init__(self, status_code: int, message: str | None = None) -> None:
        self.status_code = status_code
        super().__init__(message or f"the target answered HTTP {status_code}")


class BodyTooLarge(FetchError):
    """The target's response is larger than fetch.max_body_bytes."""

    code = "body_too_large"
    retryable = False


class TooManyRedirects(FetchError):
    """The target redirected too many times."""

    code = "too_many_redirects"
    retryable = False


class BlockedAddress(FetchError):
    """The network policy forbids this address."""

    code = "blocked_address"
    retryable = False


class RobotsDisallowed(FetchError):
    """robots.txt disallows this URL."""

    code = "robots_disallowed"
    retryable = False


class BrowserError(JobError):
    """The browser failed to render the page."""

    code = "browser_error"
    retryable = True


class BrowserUnavailable(BrowserError):
    """No Chromium was found: install it (`apt-get install -y chromium`) or set [browser] executable."""

    code = "browser_unavailable"
    retryable = False


class BrowserCrashed(BrowserError):
    """The browser crashed or was killed during the job."""

    code = "browser_crashed"
    retryable = True


class ActionFailed(JobError):
    """A page action failed."""

    code = "action_failed"


class JobTimeout(JobError):
    """The job did not finish within its timeout_s."""

    code = "timeout"
    retryable = True


class WorkerLost(JobError):
    """The worker running this job died and no attempts remain."""

    code = "worker_lost"
