"""Waiting for a job to end: when it has, how long each long-poll may hold, who hears of each change, and
how long a server that went away (a restart) is waited for."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from litejobs.client.errors import ServerUnreachable
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


#: a long-poll answered well before its time with the job unfinished (a stopping server answers at
#: once) is asked again after at most this, not at once: no burst of polls through a stop
EARLY_ANSWER_PAUSE_S = 1.0


def early_answer_pause_s(asked_s: float, took_s: float, deadline: float | None) -> float:
    """How long to pause before the next poll after one that held `took_s` of the `asked_s` asked."""
    if asked_s < 2 * EARLY_ANSWER_PAUSE_S or took_s >= asked_s / 2:
        return 0.0
    if deadline is None:
        return EARLY_ANSWER_PAUSE_S
    return max(0.0, min(EARLY_ANSWER_PAUSE_S, deadline - time.monotonic()))


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


class Reconnects:
    """The reconnect budget of a follower (an event stream, a wait): how long a server that went away
    is tried again, so that a restart is ridden out. MAX_FAILURES tries in a row, 0.5 s apart and
    doubling to MAX_PAUSE_S (about 17 s of pauses in all), never past the caller's `deadline`
    (time.monotonic()). A server not yet reached in this call (no answer, no request taken) is
    reported at once: a wrong URL or a server that is not running says so without the wait."""

    #: consecutive failed tries before giving up
    MAX_FAILURES = 6
    FIRST_PAUSE_S = 0.5
    MAX_PAUSE_S = 5.0

    def __init__(self, deadline: float | None = None) -> None:
        self.deadline = deadline
        self.connected = False
        self.failures = 0

    def reached(self) -> None:
        """The server answered: the next break starts a fresh count."""
        self.connected, self.failures = True, 0

    def pause_s(self, exc: ServerUnreachable | None) -> float:
        """The pause before trying again; raises `exc` when the server was never reached, stays away
        too long, or the deadline has passed. `None`: a stream that broke or ended early, which does
        not say the server is away (the next try does)."""
        self.failures += 1
        self.connected = self.connected or (exc is not None and exc.connected)
        if exc is not None and (not self.connected or self.failures > self.MAX_FAILURES or past(self.deadline)):
            raise exc
        pause_s = min(self.MAX_PAUSE_S, self.FIRST_PAUSE_S * 2 ** (self.failures - 1))
        return pause_s if self.deadline is None else max(0.0, min(pause_s, self.deadline - time.monotonic()))
