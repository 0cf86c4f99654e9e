"""A client waiting through a server's stop asks again at a measured pace, not in a burst."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from litejobs.client import Client
from tests.support import ServerProcess, TargetSite
from tests.test_shutdown_signals import Gate, server_env


@pytest.mark.slow
def test_a_wait_through_a_stop_polls_at_a_pace(tmp_path: Path, site: TargetSite) -> None:
    gate = Gate(site)
    server = ServerProcess(tmp_path / "stop.db", env=server_env())
    held = server.http.submit({"url": gate.url}, max_attempts=1)["job_id"]
    outcome: list[Any] = []

    def wait() -> None:
        try:
            outcome.append(Client(server.base_url).wait(held, timeout_s=6))
        except Exception as exc:  # the server is gone at the end: ServerUnreachable is fine here
            outcome.append(exc)

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    time.sleep(0.5)  # its first long-poll is held
    polls_before = sum(f"/v1/jobs/{held}" in line for line in server.output)

    assert server.terminate(60) == 0
    waiter.join(30)

    assert not waiter.is_alive() and outcome
    polls_during_stop = sum(f"/v1/jobs/{held}" in line for line in server.output) - polls_before
    # the stop answers every ?wait= at once with the job unfinished: a client asking again at once sent
    # ~115 polls in the 60 ms before the listener closed; paced, it sends one or two
    assert polls_during_stop <= 4
