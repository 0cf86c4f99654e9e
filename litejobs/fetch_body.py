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


_GZIP_MAGIC = b"\x1f\x8b"
# Input is inflated a slice at a time: at the end of each member zlib copies the rest of its input
# (unused_data), so a big chunk of tiny members would cost the square of the chunk's size.
_SLICE_BYTES = 16 * 1024


class _Inflater:
    """Incremental gzip or deflate decoding that never produces more than it is allowed to.

    A gzip body may be several members one after another (RFC 1952 2.2; `cat a.gz b.gz`), read as
    browsers and curl read them: each in turn. Bytes after a member that do not start another (zero
    padding, junk) are ignored.
    """

    def __init__(self, coding: str) -> None:
        self._coding = coding
        self._member: zlib._Decompress | None = None
        self._after_member = b""  # what follows a finished member, too short yet to tell if it starts one
        self._ended = False  # what followed the last member was not another one

    def feed(self, data: bytes, limit: int) -> bytes:
        """Decoded bytes for `data`, at most `limit` (> 0) of them; past the stream's end, nothing."""
        parts: list[bytes] = []
        view = memoryview(data)
        for start in range(0, len(view), _SLICE_BYTES):
            pending: bytes | memoryview = view[start : start + _SLICE_BYTES]
            while pending and limit > 0 and not self._ended:
                if self._member is not None and self._member.eof:
                    pending = self._next_member(pending)
                    continue
                if self._member is None:
                    self._member = zlib.decompressobj(self._wbits(pending))
                part = self._member.decompress(pending, limit)
                parts.append(part)
                limit -= len(part)
                pending = self._member.unused_data if self._member.eof else b""
        return b"".join(parts)

    def _next_member(self, following: bytes | memoryview) -> bytes:
        """What follows a finished member: the next member's bytes, or b"" (to wait for more, or to ignore)."""
        following = self._after_member + bytes(following)
        self._after_member = b""
        if self._coding == "deflate" or not following.startswith(_GZIP_MAGIC[: len(following)]):
            self._ended = True
            return b""
        if len(following) < len(_GZIP_MAGIC):
            self._after_member = following
            return b""
        self._member = None
        return following

    def _wbits(self, first: bytes | memoryview) -> int:
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
