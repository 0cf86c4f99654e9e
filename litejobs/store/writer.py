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


def is_disk_full(exc: BaseException) -> bool:
    """SQLITE_FULL: the disk, or the file's max_page_count (store.max_db_mb), has no room left."""
    if not isinstance(exc, sqlite3.Error):
        return False
    text = str(exc).lower()
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in text or "disk i/o" in text


class _TransactionLost(Exception):
    """An op hit SQLITE_FULL and SQLite rolled the whole transaction back, savepoints and all."""

    def __init__(self, index: int, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.index = index


def _begin(conn: sqlite3.Connection) -> None:
    for attempt in range(BUSY_RETRIES):
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            # another process holds the write lock past busy_timeout: wait and try again
            if "locked" not in str(exc) or attempt == BUSY_RETRIES - 1:
                raise
            time.sleep(0.05)


def _run_together(conn: sqlite3.Connection, ops: list[WriteOp], full_message: str | None) -> list[tuple[bool, Any]]:
    """Every op in one IMMEDIATE transaction, each in a savepoint so that one op's failure (a
    constraint, a guard) does not undo the others."""
    _begin(conn)
    outcomes: list[tuple[bool, Any]] = []
    try:
        for index, op in enumerate(ops):
            conn.execute("SAVEPOINT op")
            try:
                outcomes.append((True, op(conn)))
                conn.execute("RELEASE op")
            except Exception as exc:
                if not conn.in_transaction:
                    # SQLite ended the transaction itself (it may on SQLITE_FULL, IOERR, NOMEM): the
                    # savepoint is gone and so is every earlier op's work
                    if is_disk_full(exc):
                        raise _TransactionLost(index, exc) from exc
                    raise
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
                outcomes.append((False, StorageFull(full_message) if is_disk_full(exc) else exc))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise
    return outcomes


def _run_batch(conn: sqlite3.Connection, ops: list[WriteOp], full_message: str | None) -> list[tuple[bool, Any]]:
    """In the database thread: the ops' outcomes, committed together. When one op finds the
    database full and SQLite undoes the whole transaction, that op gets StorageFull and the others run
    again one transaction each, so that those that fit (a finish, a cancel, a sweep that frees
    space) are neither lost nor refused along with it. An error of COMMIT itself fails them all."""
    try:
        return _run_together(conn, ops, full_message)
    except _TransactionLost as lost:
        outcomes: list[tuple[bool, Any]] = []
        for index, op in enumerate(ops):
            if index == lost.index:
                outcomes.append((False, StorageFull(full_message)))
                continue
            try:
                outcomes.extend(_run_together(conn, [op], full_message))
            except _TransactionLost:
                outcomes.append((False, StorageFull(full_message)))
        return outcomes


class GroupWriter:
    """Queue a write with `await writer.run(op)`; it returns op's value once committed."""

    def __init__(self, conn: aiosqlite.Connection, *, full_message: str | None = None) -> None:
        self._conn = conn
        #: what a write refused for lack of space says (StorageFull, 507)
        self.full_message = full_message
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
            outcomes = await self._conn._execute(_run_batch, self._conn._conn, ops, self.full_message)
        except Exception as exc:
            # every future fails: none of the batch was committed
            error: BaseException = StorageFull(self.full_message) if is_disk_full(exc) else exc
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
