"""Adaptive group commit: one writer drains queued write operations into one transaction.

aiosqlite hops to its thread once per call (0.1–0.3 ms), more than SQLite's own work for a small
statement, and a commit costs an fsync. So every write is a plain function of the sqlite3
connection; the writer runs all that are queued in one hop and one commit. Under load batches
grow by themselves; idle, a lone write commits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import aiosqlite

from litejobs.errors import StorageFull

WriteOp = Callable[[sqlite3.Connection], Any]

MAX_BATCH = 512
BUSY_RETRIES = 50


def _is_disk_full(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("disk is full" in text or "disk i/o" in text)


def _run_batch(conn: sqlite3.Connection, ops: list[WriteOp]) -> list[tuple[bool, Any]]:
    """In the database thread: run every op in one IMMEDIATE transaction, each in a savepoint so
    that one op's failure (a constraint, a guard) does not undo the others."""
    for attempt in range(BUSY_RETRIES):
        try:
            conn.execute("BEGIN IMMEDIATE")
            break
        except sqlite3.OperationalError as exc:
            # another process holds the write lock past busy_timeout: wait and try again
            if "locked" not in str(exc) or attempt == BUSY_RETRIES - 1:
                raise
            time.sleep(0.05)
    outcomes: list[tuple[bool, Any]] = []
    try:
        for op in ops:
            conn.execute("SAVEPOINT op")
            try:
                outcomes.append((True, op(conn)))
                conn.execute("RELEASE op")
            except Exception as exc:
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
                if _is_disk_full(exc):
                    raise
                outcomes.append((False, exc))
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    return outcomes


class GroupWriter:
    """Queue a write with `await writer.run(op)`; it returns op's value once committed."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._queue: asyncio.Queue[tuple[WriteOp, asyncio.Future[Any]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.ops = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._drain_forever(), name="litejobs-store-writer")

    async def stop(self) -> None:
        if self._task is None:
            return
        while not self._queue.empty():
            await asyncio.sleep(0.005)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def run(self, op: WriteOp) -> Any:
        if self._task is None or self._task.done():
            raise RuntimeError("the store is closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self._queue.put((op, future))
        return await future

    async def _drain_forever(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._commit(batch)

    async def _commit(self, batch: list[tuple[WriteOp, asyncio.Future[Any]]]) -> None:
        ops = [op for op, _ in batch]
        try:
            # aiosqlite has no public "run this function in your thread"; _execute is that, and
            # it is what lets one hop carry a whole batch.
            outcomes = await self._conn._execute(_run_batch, self._conn._conn, ops)
        except Exception as exc:
            error: BaseException = StorageFull() if _is_disk_full(exc) else exc
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        self.batches += 1
        self.ops += len(batch)
        for (ok, value), (_, future) in zip(outcomes, batch, strict=True):
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
