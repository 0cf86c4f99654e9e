"""Logs: one line per HTTP request and per job transition, as text or as one JSON object per line.

Request lines carry the method, the path (never the query string, where `api_key` may sit), the
status, the time taken and the request id; no header is ever logged, so neither is an API key.
"""

from __future__ import annotations

import json
import logging
import queue
import sys
import threading
import time
from datetime import UTC, datetime
from typing import IO, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from litejobs.jobs import Job, JobState

request_log = logging.getLogger("litejobs.http")
job_log = logging.getLogger("litejobs.jobs")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
#: how often the writer thread writes the lines that came since
WRITE_EVERY_S = 0.05
# Attributes every LogRecord has; whatever else a record carries came in through `extra=` and
# becomes a field of its JSON line.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, msg, the record's `extra` fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class _BackgroundHandler(logging.Handler):
    """Hands records to a writer thread unformatted, which wakes every WRITE_EVERY_S, formats what
    came and writes it in one call. Formatting on the event loop cost 8% of a busy server; a writer
    woken per record cost about as much again, by taking the GIL from the loop for every line."""

    def __init__(self, target: logging.StreamHandler[Any]) -> None:
        super().__init__()
        self.target = target
        self._records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._write_forever, name="litejobs-log-writer", daemon=True)
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        self._records.put(record)  # our records carry only immutable values: safe to format later

    def _write_forever(self) -> None:
        while True:
            closing = self._closing.wait(WRITE_EVERY_S)
            self._write_waiting()
            if closing:
                return

    def _write_waiting(self) -> None:
        lines: list[str] = []
        while True:
            try:
                record = self._records.get_nowait()
            except queue.Empty:
                break
            if record.levelno >= self.target.level:
                try:
                    lines.append(self.target.format(record) + "\n")
                except Exception:
                    self.target.handleError(record)
        if lines:
            try:
                self.target.stream.write("".join(lines))
                self.target.flush()
            except Exception:  # a closed or full stream: logging must never take the server down
                pass

    def close(self) -> None:
        # logging.shutdown() closes every handler at exit: write what is queued, so no line is lost
        self._closing.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5)
        self._write_waiting()
        super().close()


def install_logging(log_format: str = "text", stream: IO[str] | None = None, level: int = logging.INFO) -> None:
    """Send every logger (litejobs', uvicorn's, aiohttp's) through one handler on the root logger,
    written by a background thread."""
    target = logging.StreamHandler(stream or sys.stderr)
    target.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(_BackgroundHandler(target))
    root.setLevel(level)
    # The logging docs' "Optimization" switches: our lines never print the caller's file, thread or
    # process, and looking them up was most of what a request line cost the event loop.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


class RequestLogMiddleware:
    """Pure ASGI: one INFO line per request once its response has started (or its handler crashed).
    Sits outside RequestIdMiddleware and reads the id that one put into the scope."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not request_log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            ms = round((time.perf_counter() - started) * 1000, 1)
            request_id = scope.get("state", {}).get("request_id", "")
            method, path = scope["method"], scope["path"]
            request_log.info(
                "%s %s %d %.1fms %s",
                method,
                path,
                status,
                ms,
                request_id,
                extra={"method": method, "path": path, "status": status, "ms": ms, "request_id": request_id},
            )


def log_transition(job: Job) -> None:
    """ChangeFeed listener: one line per status change (progress reports are not transitions)."""
    if job.status is JobState.ACTIVE and job.progress is not None:
        return
    code = (job.error or {}).get("code") if job.status in (JobState.FAILED, JobState.DELAYED) else None
    job_log.info(
        "job %s %s %s attempt %d%s",
        job.id,
        job.kind,
        job.status.value,
        job.attempts,
        f" error {code}" if code else "",
        extra={
            "job_id": job.id,
            "kind": job.kind,
            "status": job.status.value,
            "attempt": job.attempts,
            "error_code": code,
        },
    )
