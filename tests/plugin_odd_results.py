"""Plugin kinds that return what a job cannot keep, or change what they are given, for tests/test_plugins.py."""

from __future__ import annotations

import asyncio
from typing import Any

from litejobs.jobs import JobResult, JobState
from litejobs.kinds import KindContext
from litejobs.plugins import job_kind


@job_kind({"state": "string", "stats": "object?"})
async def ends_as(input: dict[str, Any], ctx: KindContext) -> JobResult:
    """Return a JobResult with the status (and stats) the input names, whatever it is."""
    return JobResult(JobState(input["state"]), {"a": 1}, input["stats"] or {})


@job_kind({"where": {"type": "string", "choices": ["outputs", "stats"]}})
async def set_inside(input: dict[str, Any], ctx: KindContext) -> JobResult:
    """A JobResult with a set, which JSON has no form for, in its outputs or its stats."""
    if input["where"] == "outputs":
        return JobResult(JobState.COMPLETED, {"tags": {"a", "b"}})
    return JobResult(JobState.COMPLETED, {"a": 1}, {"tags": {"a", "b"}})


@job_kind({"succeed_on": {"type": "integer", "min": 1, "max": 10}})
async def cancelled_elsewhere(input: dict[str, Any], ctx: KindContext) -> dict[str, Any]:
    """Until attempt `succeed_on`, await a task that something else cancels: its CancelledError
    escapes the plugin, though nobody cancelled the job."""
    if ctx.attempt < input["succeed_on"]:
        helper = asyncio.create_task(asyncio.sleep(60))
        asyncio.get_running_loop().call_soon(helper.cancel)
        await helper
    return {"attempt": ctx.attempt}


@job_kind(
    {
        "options": {"type": "object", "default": {"seen": []}},
        "tags": {"type": "array", "default": [["first"]]},
    }
)
async def tally(input: dict[str, Any], ctx: KindContext) -> dict[str, Any]:
    """Change its input in place, nested parts included: what it returns must not depend on earlier jobs."""
    input["options"]["seen"].append(ctx.attempt)
    input["options"]["runs"] = input["options"].get("runs", 0) + 1
    input["tags"][0].append("again")
    input["tags"].append("more")
    return {"options": input["options"], "tags": input["tags"]}
