"""A plugin kind that saves a file, for the file-area tests: what a screenshot does, without Chromium."""

from __future__ import annotations

from typing import Any

from litejobs.kinds import KindContext
from litejobs.plugins import job_kind

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_like(size: int) -> bytes:
    """`size` bytes that start like a PNG, the same for the same size (the tests compare them)."""
    body = bytes(range(256)) * (size // 256 + 1)
    return (PNG_MAGIC + body)[:size]


@job_kind({"size": {"type": "integer", "min": 8, "max": 64 * 1024 * 1024}})
async def snapshot(input: dict[str, Any], ctx: KindContext) -> dict[str, Any]:
    """Save `size` bytes as snapshot.png; the output is its URL path."""
    return {"file": await ctx.save_file("snapshot.png", png_like(input["size"]), "image/png")}
