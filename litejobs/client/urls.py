"""The native API's URLs as both clients build them: the default server, job paths, query strings."""

from __future__ import annotations

import urllib.parse
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8000"


def job_path(job_id: str, suffix: str = "") -> str:
    return f"/v1/jobs/{urllib.parse.quote(job_id, safe='')}{suffix}"


def poll_path(job_id: str, wait_s: float) -> str:
    """The job's path, long-polled for `wait_s` when above zero."""
    return job_path(job_id) + (f"?wait={wait_s:.3f}" if wait_s > 0 else "")


def query_string(**params: Any) -> str:
    given = {name: value for name, value in params.items() if value is not None}
    return "?" + urllib.parse.urlencode(given) if given else ""
