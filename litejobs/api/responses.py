"""JSONResponse: Starlette's, encoded by litejobs.jsontext (orjson: the same compact UTF-8 bytes,
faster; a float NaN or infinity becomes null where Starlette's raised, a 500 after the fact).
`file_bytes_response`: a file kept in the database, answered as Starlette's FileResponse answers one
on disk (byte ranges, ETag, Last-Modified), so that a client sees no difference between the two.
`file_headers`: what keeps a stored file from running as a page of the API's origin."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from email.utils import formatdate
from typing import Any

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


def file_bytes_response(
    request: Request, data: bytes, media_type: str, etag: str, modified_at_ms: int | None, name: str
) -> responses.Response:
    """The whole file (200), one range of it or several (206, multipart/byteranges), 416 for a range
    past its end, 400 for a Range that is not one; `If-Range` that is not its ETag or Last-Modified
    gets the whole file. Starlette's FileResponse rules, for bytes already in memory."""
    headers = {"accept-ranges": "bytes", "etag": etag, **file_headers(name, media_type)}
    if modified_at_ms is not None:
        headers["last-modified"] = formatdate(modified_at_ms / 1000, usegmt=True)
    asked = request.headers.get("range")
    if_range = request.headers.get("if-range")
    stale = if_range is not None and if_range not in (etag, headers.get("last-modified"))
    if asked is None or stale or request.method not in ("GET", "HEAD"):
        return responses.Response(data, media_type=media_type, headers=headers)
    size = len(data)
    try:
        ranges = _byte_ranges(asked, size)
    except _Unsatisfiable:
        unsatisfiable = {"content-range": f"bytes */{size}", "x-content-type-options": "nosniff"}
        return responses.PlainTextResponse(status_code=416, headers=unsatisfiable)
    except ValueError as exc:
        return responses.PlainTextResponse(str(exc), status_code=400, headers={"x-content-type-options": "nosniff"})
    if not ranges:
        return responses.Response(data, media_type=media_type, headers=headers)
    if len(ranges) == 1:
        [(start, end)] = ranges
        headers["content-range"] = f"bytes {start}-{end - 1}/{size}"
        return responses.Response(data[start:end], status_code=206, media_type=media_type, headers=headers)
    boundary = secrets.token_hex(13)
    part_type = media_type
    if part_type.startswith("text/") and "charset=" not in part_type.lower():
        part_type += "; charset=utf-8"  # what the Content-Type of the whole would say
    parts = [
        f"--{boundary}\r\nContent-Type: {part_type}\r\nContent-Range: bytes {start}-{end - 1}/{size}\r\n\r\n".encode()
        + data[start:end]
        + b"\r\n"
        for start, end in ranges
    ]
    body = b"".join(parts) + f"--{boundary}--".encode()
    return responses.Response(
        body, status_code=206, media_type=f"multipart/byteranges; boundary={boundary}", headers=headers
    )


def _byte_ranges(header: str, size: int) -> list[tuple[int, int]]:
    """The [start, end) ranges a Range header asks for, overlaps merged; [] for the whole file. Raises
    ValueError for a header that names no range or an inverted one, `_Unsatisfiable` for a start past
    the end. Parts that are not numbers are skipped, as FileResponse skips them."""
    units, equals, spec = header.partition("=")
    if not equals:
        raise ValueError("Malformed range header.")
    if units.strip().lower() != "bytes":
        raise ValueError("Only support bytes range")
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
    if not ranges:
        raise ValueError("Range header: range must be requested")
    if any(not 0 <= start < size for start, _ in ranges):
        raise _Unsatisfiable()
    if any(start >= end for start, end in ranges):
        raise ValueError("Range header: start must be less than end")
    merged = [min(ranges)]
    for start, end in sorted(ranges)[1:]:
        if start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged
