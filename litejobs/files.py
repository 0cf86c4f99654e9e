"""Job artefacts (screenshots, PDFs) as plain files under files_dir/<job_id>/<name>."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
from pathlib import Path

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SAFE_JOB = re.compile(r"^job_[0-9a-f]{32}$")


class FileArea:
    """Where artefacts live on disk. Names are checked so that no request escapes the folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, job_id: str, name: str) -> Path:
        if not _SAFE_JOB.match(job_id) or not _SAFE_NAME.match(name) or ".." in name:
            raise ValueError(f"not a valid artefact name: {job_id}/{name}")
        return self.root / job_id / name

    async def write(self, job_id: str, name: str, data: bytes) -> Path:
        path = self.path_for(job_id, name)
        await asyncio.to_thread(self._write_atomically, path, data)
        return path

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

    async def delete_job(self, job_id: str) -> None:
        if _SAFE_JOB.match(job_id):
            await asyncio.to_thread(shutil.rmtree, self.root / job_id, True)
