"""JSONResponse: Starlette's, encoded by litejobs.jsontext (orjson: the same compact UTF-8 bytes,
faster; a float NaN or infinity becomes null where Starlette's raised, a 500 after the fact).
`file_response`: a stored file, on disk or in the database, answered as Starlette's FileResponse
answers one on disk (byte ranges, ETag, Last-Modified), from bytes the sweep can no longer take away.
`file_headers`: what keeps a stored file from running as a page of the API's origin."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import AsyncIterator
from email.utils import formatdate
from typing import Any, Protocol

from starlette import responses
from starlette.requests import Request

from litejobs import jsontext

#: a Range header asking for more ranges than this gets the whole file (as FileResponse does)
MAX_RANGES = 100
#: files larger than this are hashed for their ETag in a thread, not on the event loop
HASH_IN_THREAD_BYTES = 1024 * 1024
#: a stored file shown as a document runs nothing, loads nothing and has an opaque origin (GitHub's
#: raw files have the same policy); images and plain text still display under it
FILE_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'"
#: types a browser only displays: shown inline. Anything else (HTML, SVG, XML, JavaScript, JSON, an
#: unknown type) is a download, so a plugin's file of scraped HTML never runs on the API's origin.
_INLINE_TYPES = frozenset(
    {
        "application/pdf",
        "image/apng",
        "image/avif",
        "image/bmp",
        "image/gif",
        "image/jpeg",
        "image/png",
        "image/webp",
        "image/x-icon",
        "image/vnd.microsoft.icon",
        "text/plain",
    }
)


class JSONResponse(responses.JSONResponse):
    def render(self, content: Any) -> bytes:
        return jsontext.encode(content)


class _Unsatisfiable(Exception):
    """A range starts past the end of the file: 416."""


async def bytes_etag(data: bytes) -> str:
    """A strong ETag from the bytes themselves: the same on every node, new when they change."""
    if len(data) > HASH_IN_THREAD_BYTES:
        digest = await asyncio.to_thread(hashlib.blake2b, data, digest_size=16)
    else:
        digest = hashlib.blake2b(data, digest_size=16)
    return f'"{digest.hexdigest()}"'


def file_headers(name: str, media_type: str) -> dict[str, str]:
    """nosniff always; a download for a type a browser would run. A PDF gets no sandbox: Chromium
    will not start its PDF viewer in a sandboxed document, and a PDF's script runs in the viewer's
    own origin, never the API's. `name` is a stored file name (letters, digits, `._-` only)."""
    headers = {"x-content-type-options": "nosniff"}
    mime = media_type.partition(";")[0].strip().lower()
    if mime != "application/pdf":
        headers["content-security-policy"] = FILE_CSP
    if mime not in _INLINE_TYPES:
        headers["content-disposition"] = f'attachment; filename="{name}"'
    return headers


class FileBody(Protocol):
    """A stored file's bytes as a response reads them. `files.OpenFile` (a file held open, so the
    sweep cannot cut a download short) and `HeldBytes` (a row read whole) are the two."""

    size: int

    def chunks(self, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes [start, end), in pieces."""

    def close(self) -> None: ...


class HeldBytes:
    """A file already in memory (a database row read whole): the sweep can no longer take it."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)

    async def chunks(self, start: int, end: int) -> AsyncIterator[bytes]:
        yield self.data[start:end]

    def close(self) -> None:
        return None


def stat_etag(size: int, modified_at: float) -> str:
    """A file on disk's ETag, made as Starlette's FileResponse makes it, so that the tags clients
    kept from it still match."""
    digest = hashlib.md5(f"{modified_at}-{size}".encode(), usedforsecurity=False).hexdigest()
    return f'"{digest}"'


def file_response(
    request: Request, body: FileBody, media_type: str, etag: str, modified_at: float | None, name: str
) -> responses.Response:
    """The whole file (200), one range of it or several (206, multipart/byteranges), 416 for a range
    past its end; a Range that is not a byte range set, or `If-Range` that is not its ETag or
    Last-Modified, gets the whole file. Starlette's FileResponse rules but for the Range it cannot
    read (400 there), whether the file lives on disk or in the database. It takes `body` over: the
    answer streams it and closes it once sent, or at once."""
    headers = {"accept-ranges": "bytes", "etag": etag, **file_headers(name, media_type)}
    if modified_at is not None:
        headers["last-modified"] = formatdate(modified_at, usegmt=True)
    try:
        status, ranges = _ranges_asked(request, body.size, etag, headers.get("last-modified"))
    except _Unsatisfiable:
        body.close()
        unsatisfiable = {"content-range": f"bytes */{body.size}", **file_headers(name, media_type)}
        return responses.PlainTextResponse(status_code=416, headers=unsatisfiable)
    pieces: list[_Piece] = list(ranges)
    if len(ranges) > 1:
        boundary = secrets.token_hex(13)
        pieces = _multipart(ranges, body.size, media_type, boundary)
        media_type = f"multipart/byteranges; boundary={boundary}"
    elif status == 206:
        [(start, end)] = ranges
        headers["content-range"] = f"bytes {start}-{end - 1}/{body.size}"
    headers["content-length"] = str(sum(len(p) if isinstance(p, bytes) else p[1] - p[0] for p in pieces))
    if request.method == "HEAD":
        body.close()
        return responses.Response(b"", status_code=status, media_type=media_type, headers=headers)
    return responses.StreamingResponse(
        _stream(body, pieces), status_code=status, media_type=media_type, headers=headers
    )


#: a part of an answer's body: bytes as they are, or a range [start, end) of the file
_Piece = bytes | tuple[int, int]


def _ranges_asked(
    request: Request, size: int, etag: str, last_modified: str | None
) -> tuple[int, list[tuple[int, int]]]:
    """The status and the [start, end) ranges of the file to send (raises as `_byte_ranges` does)."""
    whole = [(0, size)]
    asked = request.headers.get("range")
    if_range = request.headers.get("if-range")
    stale = if_range is not None and if_range not in (etag, last_modified)
    if asked is None or stale or request.method not in ("GET", "HEAD"):
        return 200, whole
    ranges = _byte_ranges(asked, size)
    return (206, ranges) if ranges else (200, whole)


def _multipart(ranges: list[tuple[int, int]], size: int, media_type: str, boundary: str) -> list[_Piece]:
    part_type = media_type
    if part_type.startswith("text/") and "charset=" not in part_type.lower():
        part_type += "; charset=utf-8"  # what the Content-Type of the whole would say
    pieces: list[_Piece] = []
    for start, end in ranges:
        head = f"--{boundary}\r\nContent-Type: {part_type}\r\nContent-Range: bytes {start}-{end - 1}/{size}\r\n\r\n"
        pieces += [head.encode(), (start, end), b"\r\n"]
    return [*pieces, f"--{boundary}--".encode()]


async def _stream(body: FileBody, pieces: list[_Piece]) -> AsyncIterator[bytes]:
    try:
        for piece in pieces:
            if isinstance(piece, bytes):
                yield piece
            else:
                async for chunk in body.chunks(*piece):
                    yield chunk
    finally:
        body.close()


def _byte_ranges(header: str, size: int) -> list[tuple[int, int]]:
    """The [start, end) ranges a Range header asks for, overlaps merged; [] for the whole file, which is
    also the answer to a header that is not a byte range set (RFC 9110 §14.2: a unit the server does not
    know MUST be ignored, an invalid set may be: Starlette answered 400 in text/plain). Raises
    `_Unsatisfiable` for a start past the end. Parts that are not numbers are skipped, as FileResponse
    skips them."""
    units, equals, spec = header.partition("=")
    if not equals or units.strip().lower() != "bytes":
        return []
    parts = spec.split(",")
    if len(parts) > MAX_RANGES:
        return []
    ranges = []
    for part in parts:
        first, dash, last = (text.strip() for text in part.strip().partition("-"))
        if not dash or not (first or last):
            continue
        try:
            start = int(first) if first else max(size - int(last), 0)
            end = int(last) + 1 if first and last and int(last) < size else size
        except ValueError:
            continue
        ranges.append((start, end))
    if not ranges or any(start >= end for start, end in ranges if 0 <= start < size):
        return []  # no range, or an inverted one: an invalid set, ignored
    if any(not 0 <= start < size for start, _ in ranges):
        raise _Unsatisfiable()
    merged = [min(ranges)]
    for start, end in sorted(ranges)[1:]:
        if start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged
