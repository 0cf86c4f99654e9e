"""Plugin kinds that misbehave on purpose, for tests/test_faults.py: they kill or hang their worker."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from litejobs.kinds import KindContext
from litejobs.plugins import job_kind


@job_kind({"note": "string?"})
async def poison(input: dict[str, Any], ctx: KindContext) -> dict[str, Any]:
    """Kill the whole server process, every time it runs: a job that crashes its worker."""
    os.kill(os.getpid(), signal.SIGKILL)
    await asyncio.sleep(60)  # SIGKILL is not caught; this line only keeps the function honest
    return {}


@job_kind({"note": "string?"})
async def never_returns(input: dict[str, Any], ctx: KindContext) -> dict[str, Any]:
    """Wait for an event nobody sets: only the job's timeout (or a cancel) ends it."""
    await asyncio.Event().wait()
    return {}


@job_kind({"note": "string?"})
async def deaf(input: dict[str, Any], ctx: KindContext) -> dict[str, Any]:
    """Ignore the first cancellation and keep waiting: a plugin that breaks the documented contract."""
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        await asyncio.Event().wait()
    return {}
