"""Reading a response body within a size cap: content-decoded (gzip, deflate) as it arrives, refused or
cut at the cap without reading (or inflating) the rest. Apart from fetcher.py, which it serves."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import aiohttp

from litejobs.errors import BodyTooLarge, NetworkError


@dataclass(frozen=True)
class BodyCap:
    """How much of a body a fetch reads: past `size` bytes it is refused, or cut there if `truncate`."""

    size: int
    truncate: bool = False


class _Inflater:
    """Incremental gzip or deflate decoding that never produces more than it is allowed to."""

    def __init__(self, coding: str) -> None:
        self._coding = coding
        self._zlib: zlib._Decompress | None = None

    def feed(self, data: bytes, limit: int) -> bytes:
        """Decoded bytes for `data`, at most `limit` (> 0) of them; past the stream's end, nothing."""
        if self._zlib is None:
            self._zlib = zlib.decompressobj(self._wbits(data))
        if self._zlib.eof:
            return b""
        return self._zlib.decompress(data, limit)

    def _wbits(self, first: bytes) -> int:
        if self._coding == "deflate":
            # "deflate" should be zlib-wrapped, but many servers send a raw stream.
            return zlib.MAX_WBITS if first[0] & 0x0F == 8 else -zlib.MAX_WBITS
        return zlib.MAX_WBITS | 32  # gzip, or a zlib stream mislabelled as gzip


async def read_body(resp: aiohttp.ClientResponse, url: str, method: str, cap: BodyCap) -> tuple[bytes, bool]:
    """The body, content-decoded, and whether it was cut: past `cap.size` bytes (as sent or decoded)
    it is refused (BodyTooLarge) at once, or, when truncating, cut there and the rest left unread."""
    limit = cap.size
    declared = resp.content_length
    # A HEAD answer announces the size of a body it does not send.
    if declared is not None and declared > limit and method != "HEAD" and not cap.truncate:
        raise BodyTooLarge(f"{url} announced {declared} bytes (Content-Length), more than the {limit}-byte limit")
    coding = resp.headers.get("Content-Encoding", "").strip().lower()
    # Other codings (br, zstd, chains) are only sent if a caller asked for them: kept as received.
    inflater = _Inflater(coding) if coding in ("gzip", "x-gzip", "deflate") else None
    parts: list[bytes] = []
    received = size = 0
    async for chunk in resp.content.iter_any():
        received += len(chunk)
        if received > limit and not cap.truncate:
            raise BodyTooLarge(f"the response from {url} is larger than the {limit}-byte limit")
        try:
            data = inflater.feed(chunk, limit - size + 1) if inflater else chunk
        except zlib.error as exc:
            raise NetworkError(f"{url} sent a corrupt {coding} body ({exc})") from None
        size += len(data)
        if size > limit and not cap.truncate:
            raise BodyTooLarge(f"the response from {url} decompresses to more than the {limit}-byte limit")
        parts.append(data)
        if size > limit or received > limit:  # truncating: enough has been read
            return b"".join(parts)[:limit], True
    return b"".join(parts), False
