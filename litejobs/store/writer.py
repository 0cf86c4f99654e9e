"""Adaptive group commit: one writer drains queued write operations into one transaction.

Every write is a plain function of the sqlite3 connection; the writer runs all that are queued in
one transaction and one commit. Under load batches grow by themselves; idle, a lone write commits
at once. The batch runs on the event loop's own thread: handing it to aiosqlite's thread costs a
hop (0.1–0.3 ms) and two GIL hand-offs, more than SQLite's own work (bench_floors.py: submits on the
loop's thread reach 0.92 of a bare endpoint, through the thread 0.71). That is safe because in WAL
with synchronous=NORMAL a commit only appends to the WAL file (no fsync), and the two slow things
are kept off the loop: waiting for a lock another process holds (the batch then runs in the
connection's thread, which may wait), and checkpoints (the connection's automatic ones are off; the
writer runs one in that thread CHECKPOINT_AFTER_S after a commit, right after a batch, so that no
write lands while it copies the WAL back and the next write can start the WAL afresh).

A full disk: a write that finds no room (SQLITE_FULL) leaves a TRUNCATE checkpoint owed, and the
writer settles it before the next batch. Why first: the WAL can restart only once a checkpoint has
copied it back, which needs room for the database file to grow; space freed meanwhile used to go to
new WAL frames, which filled the disk again with the checkpoint still impossible (a wedge), and the
WAL kept the space it took. While the owed checkpoint fails for lack of space, writes are refused
without trying (each would take room the checkpoint needs) and it is tried again every FULL_RETRY_S.
The episode is logged once when it begins and once when writes succeed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import aiosqlite

from litejobs.errors import StorageFull

log = logging.getLogger("litejobs.store")

WriteOp = Callable[[sqlite3.Connection], Any]

MAX_BATCH = 512
BUSY_RETRIES = 50
#: the write connection's busy_timeout while a batch waits in its thread for another process's lock
WAIT_FOR_LOCK_MS = 5000
#: a checkpoint runs this long after the first commit since the last one: the WAL holds at most
#: about this long's worth of writes
CHECKPOINT_AFTER_S = 0.2
#: a checkpoint owed after a full disk is tried at most this often (also with no write to trigger it)
FULL_RETRY_S = 0.5
#: a full-disk episode is over (and logged so) once writes commit and none found the disk full for this long:
#: a file at max_db_mb's hard limit fails some writes and not others, which must not log a pair each time
FULL_QUIET_S = 2.0


def is_disk_full(exc: BaseException | None) -> bool:
    """SQLITE_FULL: the disk, or the file's max_page_count (store.max_db_mb), has no room left."""
    if not isinstance(exc, sqlite3.Error):
        return False
    text = str(exc).lower()
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in text or "disk i/o" in text


def _full_error(message: str | None, cause: BaseException | None) -> StorageFull:
    """The StorageFull a write gets for lack of room; its cause tells it from a refusal by policy
    (an op's own StorageFull: max_db_mb's admission), which is no full disk."""
    error = StorageFull(message)
    error.__cause__ = cause
    return error


def _found_no_room(error: BaseException) -> bool:
    return isinstance(error, StorageFull) and is_disk_full(error.__cause__)


class _LockHeld(Exception):
    """On the loop's thread, another process holds the write lock: nothing ran, wait in the thread."""


class _TransactionLost(Exception):
    """An op hit SQLITE_FULL and SQLite rolled the whole transaction back, savepoints and all."""

    def __init__(self, index: int, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.index = index


def _begin(conn: sqlite3.Connection, *, wait: bool) -> None:
    for attempt in range(BUSY_RETRIES):
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
            if not wait:
                raise _LockHeld() from exc
            # another process holds the write lock past busy_timeout: wait and try again
            if attempt == BUSY_RETRIES - 1:
                raise
            time.sleep(0.05)


def _run_together(
    conn: sqlite3.Connection, ops: list[WriteOp], full_message: str | None, *, wait: bool = True
) -> list[tuple[bool, Any]]:
    """Every op in one IMMEDIATE transaction, each in a savepoint so that one op's failure (a
    constraint, a guard) does not undo the others."""
    _begin(conn, wait=wait)
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
                outcomes.append((False, _full_error(full_message, exc) if is_disk_full(exc) else exc))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise
    return outcomes


def _run_batch_waiting(
    conn: sqlite3.Connection, ops: list[WriteOp], full_message: str | None
) -> list[tuple[bool, Any]]:
    """In the connection's thread: _run_batch, waiting as long as it takes for the write lock."""
    conn.execute(f"PRAGMA busy_timeout = {WAIT_FOR_LOCK_MS}")
    try:
        return _run_batch(conn, ops, full_message)
    finally:
        conn.execute("PRAGMA busy_timeout = 0")


def _run_batch_then_checkpoint(
    conn: sqlite3.Connection, ops: list[WriteOp], full_message: str | None
) -> tuple[list[tuple[bool, Any]], sqlite3.Error | None]:
    """In the connection's thread: the batch, then a PASSIVE checkpoint (it fsyncs) with no write of ours
    beside it, so that it copies every frame and the next write restarts the WAL from its start. With
    the checkpoint's error when it found no room (it is then owed), else None."""
    outcomes = _run_batch_waiting(conn, ops, full_message) if ops else []
    try:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    except sqlite3.Error as exc:
        # busy (another process checkpointing, or writing): the next one catches up
        return outcomes, exc if is_disk_full(exc) else None
    return outcomes, None


def _truncate_checkpoint(conn: sqlite3.Connection) -> bool:
    """In the connection's thread: copy the whole WAL back and cut the file to nothing, giving its
    space back. False when a reader still needs the WAL (it does not wait: busy_timeout is 0 here)."""
    (busy, *_) = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return not busy


def _checkpoint_marker(conn: sqlite3.Connection) -> None:
    """Queued by the writer's timer: its batch ends with a checkpoint. Never called."""


def _run_batch(conn: sqlite3.Connection, ops: list[WriteOp], full_message: str | None) -> list[tuple[bool, Any]]:
    """The ops' outcomes, committed together. When one op finds the
    database full and SQLite undoes the whole transaction, that op gets StorageFull and the others run
    again one transaction each, so that those that fit (a finish, a cancel, a sweep that frees
    space) are neither lost nor refused along with it. An error of COMMIT itself fails them all."""
    try:
        return _run_together(conn, ops, full_message)
    except _TransactionLost as lost:
        outcomes: list[tuple[bool, Any]] = []
        for index, op in enumerate(ops):
            if index == lost.index:
                outcomes.append((False, _full_error(full_message, lost.__cause__)))
                continue
            try:
                outcomes.extend(_run_together(conn, [op], full_message))
            except _TransactionLost as again:
                outcomes.append((False, _full_error(full_message, again.__cause__)))
        return outcomes


class GroupWriter:
    """Queue a write with `await writer.run(op)`; it returns op's value once committed."""

    def __init__(self, conn: aiosqlite.Connection, *, full_message: str | None = None, name: str = "") -> None:
        """`conn` must be opened with check_same_thread=False, busy_timeout 0 and wal_autocheckpoint 0:
        batches run on the loop's thread and, to wait for a lock or to checkpoint, in the connection's.
        `name` (the file) is for the logs."""
        self._conn = conn
        self.name = name or "the database"
        #: a TRUNCATE checkpoint is owed: a write or a checkpoint found no room since the last one
        self.checkpoint_owed = False
        #: (monotonic time of the owed checkpoint's last try, its error if it found no room)
        self._owed_tried: tuple[float, BaseException | None] = (-1e9, None)
        #: monotonic time of the last write that found no room, while an episode is on (None: none)
        self._full_at: float | None = None
        self._checkpoint_timer: asyncio.TimerHandle | None = None
        self.checkpoints = 0
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
        if self._checkpoint_timer is not None:
            self._checkpoint_timer.cancel()  # closing the last connection checkpoints what is left
            self._checkpoint_timer = None

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

    def _queue_checkpoint(self) -> None:
        self._checkpoint_timer = None
        self._queue.put_nowait((_checkpoint_marker, asyncio.get_running_loop().create_future()))

    async def _commit(self, batch: list[tuple[WriteOp, asyncio.Future[Any]]]) -> None:
        checkpoint = any(op is _checkpoint_marker for op, _ in batch)
        if checkpoint:
            for op, future in batch:
                if op is _checkpoint_marker:
                    future.set_result(None)
            batch = [(op, future) for op, future in batch if op is not _checkpoint_marker]
        no_room = await self._settle_owed_checkpoint() if self.checkpoint_owed else None
        if no_room is None:
            await self._run(batch, checkpoint)
        else:
            self._refuse(batch, _full_error(self.full_message, no_room))
        if self.checkpoint_owed and self._checkpoint_timer is None:
            # tried again even if nothing writes: the WAL's space comes back once there is room
            self._checkpoint_timer = asyncio.get_running_loop().call_later(FULL_RETRY_S, self._queue_checkpoint)

    async def _settle_owed_checkpoint(self) -> BaseException | None:
        """Try the owed TRUNCATE checkpoint (at most every FULL_RETRY_S). Its error while it finds
        no room (the batch is then refused), else None (done, or a reader needs the WAL: later)."""
        tried_at, no_room = self._owed_tried
        if time.monotonic() - tried_at < FULL_RETRY_S:
            return no_room
        no_room = None
        try:
            if await self._conn._execute(_truncate_checkpoint, self._conn._conn):
                self.checkpoint_owed = False
                self.checkpoints += 1
        except sqlite3.Error as exc:
            if is_disk_full(exc):
                no_room = exc
                self._found_full(exc)
        self._owed_tried = (time.monotonic(), no_room)
        return no_room

    def _found_full(self, cause: BaseException) -> None:
        """A write or a checkpoint found no room: a checkpoint is owed; the episode's start is logged."""
        self.checkpoint_owed = True
        if self._full_at is None:
            log.warning(
                "%s: no room to write (%s); writes answer 507 storage_full until space is freed",
                self.name,
                str(cause) or type(cause).__name__,
            )
            # the one traceback of the episode, for whoever debugs the disk itself
            log.debug("the error that found no room", exc_info=cause)
        self._full_at = time.monotonic()

    def _written(self) -> None:
        """A batch committed and none of it found the disk full: the episode may be over (an owed
        checkpoint has been settled, and no write found the disk full for FULL_QUIET_S)."""
        if self._full_at is None or self.checkpoint_owed or time.monotonic() - self._full_at < FULL_QUIET_S:
            return
        self._full_at = None
        # the writes that followed the space's return grew the WAL again, and it keeps its size: cut it too
        self.checkpoint_owed = True
        log.info("%s: writes succeed again; the WAL is checkpointed and truncated to give its space back", self.name)

    @staticmethod
    def _refuse(batch: list[tuple[WriteOp, asyncio.Future[Any]]], error: BaseException) -> None:
        for _, future in batch:
            if not future.done():
                future.set_exception(error)

    async def _run(self, batch: list[tuple[WriteOp, asyncio.Future[Any]]], checkpoint: bool) -> None:
        ops = [op for op, _ in batch]
        raw = self._conn._conn
        try:
            # aiosqlite has no public "run this function in your thread"; _execute is that
            if checkpoint:
                outcomes, no_room = await self._conn._execute(_run_batch_then_checkpoint, raw, ops, self.full_message)
                self.checkpoints += 1
                if no_room is not None:
                    self._found_full(no_room)
            else:
                try:
                    outcomes = _run_together(raw, ops, self.full_message, wait=False)
                except (_LockHeld, _TransactionLost):
                    # nothing was committed: another process holds the lock, or SQLite undid the
                    # batch for want of space. Both may wait or take one transaction per op: not on
                    # the loop.
                    outcomes = await self._conn._execute(_run_batch_waiting, raw, ops, self.full_message)
        except Exception as exc:
            # every future fails: none of the batch was committed
            if is_disk_full(exc):
                self._found_full(exc)
                self._refuse(batch, _full_error(self.full_message, exc))
            else:
                self._refuse(batch, exc)
            return
        no_room = next((value for ok, value in outcomes if not ok and _found_no_room(value)), None)
        if no_room is not None:
            self._found_full(no_room.__cause__ or no_room)
        elif ops:
            self._written()
        self.batches += 1
        self.ops += len(batch)
        if ops and not checkpoint and self._checkpoint_timer is None:
            loop = asyncio.get_running_loop()
            self._checkpoint_timer = loop.call_later(CHECKPOINT_AFTER_S, self._queue_checkpoint)
        for (ok, value), (_, future) in zip(outcomes, batch, strict=True):
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
