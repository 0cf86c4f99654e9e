"""Sitemaps: XML url sets, sitemap indexes, plain-text lists, gzipped or not, read within a size cap; pure."""

from __future__ import annotations

import html
import re
import zlib
from dataclasses import dataclass, field
from functools import lru_cache

#: the sitemaps protocol allows 50 MB uncompressed per file; more is cut off there
MAX_SITEMAP_BYTES = 50 * 1024 * 1024
_GZIP_MAGIC = b"\x1f\x8b"
# Blocks, not an XML parser: sitemaps in the wild are often malformed, and a regex cannot be made to
# expand entities (billion laughs) or fetch external ones.
_BLOCK = re.compile(r"<([\w.-]+:)?(url|sitemap)\b[^>]*>(.*?)</\1?\2\s*>", re.S | re.I)
_CDATA = re.compile(r"<!\[CDATA\[(.*?)\]\]>", re.S)


@dataclass(frozen=True)
class Sitemap:
    """What one sitemap file lists."""

    #: page URLs (`<url><loc>`, or the lines of a text sitemap), in file order
    urls: list[str] = field(default_factory=list)
    #: child sitemaps (`<sitemap><loc>` of a sitemap index)
    sitemaps: list[str] = field(default_factory=list)
    #: the file was larger than the cap and only its start was read
    truncated: bool = False
    #: bytes read after decompression
    size: int = 0


def decompressed(data: bytes, max_bytes: int) -> tuple[bytes, bool]:
    """`data` un-gzipped when it is gzip (twice at most: some servers gzip a .gz again), at most
    `max_bytes` of it; and whether it was cut. A corrupt gzip stream reads as empty."""
    truncated = False
    for _ in range(2):
        if not data.startswith(_GZIP_MAGIC):
            break
        inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
        try:
            data = inflater.decompress(data, max_bytes + 1)
        except zlib.error:
            return b"", False
        truncated = truncated or len(data) > max_bytes or bool(inflater.unconsumed_tail)
    if len(data) > max_bytes:
        data, truncated = data[:max_bytes], True
    return data, truncated


def parse_sitemap(data: bytes, max_bytes: int = MAX_SITEMAP_BYTES) -> Sitemap:
    """The URLs and child sitemaps in one sitemap file (XML or text, gzipped or not)."""
    raw, truncated = decompressed(data, max_bytes)
    text = raw.decode("utf-8", errors="replace")
    if "<" not in text:
        urls = [line.strip() for line in text.splitlines() if line.strip().startswith(("http://", "https://"))]
        return Sitemap(urls, [], truncated, len(raw))
    urls: list[str] = []
    sitemaps: list[str] = []
    for match in _BLOCK.finditer(text):
        prefix, name, body = match.group(1) or "", match.group(2).lower(), match.group(3)
        loc = _loc(prefix, body)
        if loc:
            (sitemaps if name == "sitemap" else urls).append(loc)
    return Sitemap(urls, sitemaps, truncated, len(raw))


@lru_cache(maxsize=16)
def _loc_pattern(prefix: str) -> re.Pattern[str]:
    # Only the block's own <loc>: an <image:loc> inside a <url> names an image, not a page.
    escaped = re.escape(prefix)
    return re.compile(rf"<{escaped}loc\b[^>]*>(.*?)</{escaped}loc\s*>", re.S | re.I)


def _loc(prefix: str, body: str) -> str | None:
    found = _loc_pattern(prefix).search(body)
    if found is None:
        return None
    value = _CDATA.sub(lambda m: m.group(1), found.group(1))
    value = html.unescape(value).strip()
    return value if value.startswith(("http://", "https://")) else None
