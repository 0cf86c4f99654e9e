"""Job artefacts (screenshots, PDFs): one FileArea interface, kept in a folder or in the database.

`DirectoryFiles` keeps plain files under files_dir/<job_id>/<name> (SQLite, or PostgreSQL nodes
that share a folder); `DatabaseFiles` keeps the bytes in the store (PostgreSQL without files_dir),
so that any node can serve a file another node wrote. app.py picks one; the worker writes through
it, the file route reads through it and the sweeper deletes through it.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import stat
import tempfile
from collections.abc import AsyncIterator
from io import FileIO
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from litejobs.errors import JobError

if TYPE_CHECKING:
    from litejobs.store import FileBytesStore

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SAFE_JOB = re.compile(r"^job_[0-9a-f]{32}$")

#: the largest artefact kept in the database: screenshots run 0.1–5 MB, a long page's full
#: screenshot or PDF a few tens; past this the job fails `file_too_large` (a row is read whole
#: into memory to be served, so the cap bounds what one download costs a node)
MAX_DB_FILE_BYTES = 32 * 1024 * 1024


class FileTooLarge(JobError):
    """The artefact is larger than the database keeps (MAX_DB_FILE_BYTES); set [store] files_dir to keep it on disk."""

    code = "file_too_large"
    retryable = False


def check_name(job_id: str, name: str) -> None:
    """Raise ValueError unless both are names this server gives out: nothing can escape a folder."""
    if not _SAFE_JOB.match(job_id) or not _SAFE_NAME.match(name) or ".." in name:
        raise ValueError(f"not a valid artefact name: {job_id}/{name}")


class FileArea(Protocol):
    """Where a job's artefacts are kept; names are checked by `check_name` before any use."""

    async def write(self, job_id: str, name: str, data: bytes) -> None: ...

    async def read(self, job_id: str, name: str) -> OpenFile | bytes | None:
        """The file held open (served from disk without loading it), the bytes, or None when it is
        gone. Either way its bytes are in hand: the sweep can no longer take them from a download."""

    async def delete_job(self, job_id: str) -> None:
        """Remove every artefact of a job the store has just deleted."""


class OpenFile:
    """A file of the folder, held open. The sweep may unlink it the next moment; the open descriptor
    keeps its bytes readable (POSIX) until closed, so a download once begun is served whole."""

    chunk_bytes = 64 * 1024

    def __init__(self, file: FileIO) -> None:
        self.file = file  # a file object, not a bare descriptor: one dropped unclosed still closes
        found = os.fstat(file.fileno())
        self.size = found.st_size
        self.modified_at = found.st_mtime

    @classmethod
    def of(cls, path: Path) -> OpenFile | None:
        """The file at `path` opened, or None when there is no such file (any longer). Blocking."""
        try:
            file = path.open("rb", buffering=0)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            file.close()
            return None
        return cls(file)

    async def chunks(self, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes [start, end), read by offset in a thread, a piece at a time."""
        while start < end:
            chunk = await asyncio.to_thread(os.pread, self.file.fileno(), min(self.chunk_bytes, end - start), start)
            if not chunk:  # nothing truncates a stored file in place: it is replaced or unlinked
                raise OSError(f"{self.file.name} ended at {start} bytes of {self.size}")
            start += len(chunk)
            yield chunk

    def close(self) -> None:
        self.file.close()


class DirectoryFiles:
    """Artefacts as plain files under `root`: local to a node unless every node mounts `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, job_id: str, name: str) -> Path:
        check_name(job_id, name)
        return self.root / job_id / name

    async def write(self, job_id: str, name: str, data: bytes) -> None:
        await asyncio.to_thread(self._write_atomically, self.path_for(job_id, name), data)

    @staticmethod
    def _write_atomically(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # write beside, then rename: a crash leaves the old file or none, never half of one
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    async def read(self, job_id: str, name: str) -> OpenFile | None:
        return await asyncio.to_thread(OpenFile.of, self.path_for(job_id, name))

    async def delete_job(self, job_id: str) -> None:
        if _SAFE_JOB.match(job_id):
            await asyncio.to_thread(shutil.rmtree, self.root / job_id, True)


class DatabaseFiles:
    """Artefacts as rows of the store (PostgreSQL's file_data), so every node serves every file.
    The rows belong to their job and go when it is deleted, so `delete_job` has nothing to do."""

    def __init__(self, store: FileBytesStore, max_bytes: int = MAX_DB_FILE_BYTES) -> None:
        self.store = store
        self.max_bytes = max_bytes

    async def write(self, job_id: str, name: str, data: bytes) -> None:
        check_name(job_id, name)
        if len(data) > self.max_bytes:
            raise FileTooLarge(
                f"{name} is {len(data):,} bytes; the database keeps files of up to {self.max_bytes:,} "
                "bytes (set [store] files_dir to keep larger ones in a shared folder)"
            )
        await self.store.put_file_data(job_id, name, data)

    async def read(self, job_id: str, name: str) -> bytes | None:
        check_name(job_id, name)
        return await self.store.file_data(job_id, name)

    async def delete_job(self, job_id: str) -> None:
        return None
