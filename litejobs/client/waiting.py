"""Waiting for a job to end: when it has, how long each long-poll may hold, who hears of each change."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from litejobs.jobs import TERMINAL

#: the server holds `?wait=` at most this long
MAX_WAIT_S = 60.0
#: a long-poll ends this much before the client's own request timeout, so that the answer can still arrive
WAIT_MARGIN_S = 5.0

OnChange = Callable[[dict[str, Any]], None]


def is_terminal(job: Mapping[str, Any]) -> bool:
    return job.get("status") in TERMINAL  # JobState is a str enum: "failed" in TERMINAL


def longest_poll_s(request_timeout_s: float | None) -> float:
    """The longest `?wait=` whose answer still beats a request timeout of `request_timeout_s`: the server's
    cap, and WAIT_MARGIN_S short of the timeout (or half of it, for timeouts too short for the margin)."""
    if request_timeout_s is None:
        return MAX_WAIT_S
    return min(MAX_WAIT_S, max(request_timeout_s - WAIT_MARGIN_S, request_timeout_s / 2))


def poll_s(deadline: float | None, longest_s: float = MAX_WAIT_S) -> float:
    """How long the next long-poll may hold: at most `longest_s`, never past the deadline."""
    return longest_s if deadline is None else max(0.0, min(longest_s, deadline - time.monotonic()))


def past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


class Watch:
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
