"""Waiting for a job to end: when it has, how long each long-poll may hold, who hears of each change."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from litejobs.jobs import TERMINAL

#: the server holds `?wait=` at most this long
MAX_WAIT_S = 60.0

OnChange = Callable[[dict[str, Any]], None]


def is_terminal(job: Mapping[str, Any]) -> bool:
    return job.get("status") in TERMINAL  # JobState is a str enum: "failed" in TERMINAL


def poll_s(deadline: float | None) -> float:
    """How long the next long-poll may hold: at most the server's cap, never past the deadline."""
    return MAX_WAIT_S if deadline is None else max(0.0, min(MAX_WAIT_S, deadline - time.monotonic()))


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
