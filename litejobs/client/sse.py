"""Server-Sent Events: parsing a text/event-stream into Events, and following a stream across reconnects."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from litejobs.client.errors import ServerUnreachable
from litejobs.client.urls import job_path
from litejobs.client.waiting import Reconnects, is_terminal

#: the longest silence a followed stream waits out: the server sends a keep-alive every 15 s
#: (api/events.py KEEPALIVE_S); three missed ones mean the stream is dead. Independent of a client's
#: request timeout, which is often shorter than the keep-alive interval.
STREAM_READ_S = 45.0


@dataclass(frozen=True)
class Event:
    """One Server-Sent Event: `type` is `status` or `progress`; `job` is the job as it then was."""

    type: str
    job: dict[str, Any]
    id: str | None = None


class SseParser:
    """Bytes of a text/event-stream in, whole events out; comments (keep-alives) are skipped."""

    def __init__(self) -> None:
        self._buffer = b""
        self._fields: dict[str, str] = {}
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[Event]:
        *lines, self._buffer = (self._buffer + chunk).split(b"\n")
        events = []
        for raw in lines:
            line = raw.rstrip(b"\r").decode()
            if not line:
                event = self._dispatch()
                if event is not None:
                    events.append(event)
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "data":
                    self._data.append(value)
                elif name in ("event", "id"):
                    self._fields[name] = value
        return events

    def _dispatch(self) -> Event | None:
        fields, data = self._fields, "\n".join(self._data)
        self._fields, self._data = {}, []
        try:
            job = json.loads(data)
        except ValueError:
            return None
        return Event(fields.get("event", "message"), job, fields.get("id")) if isinstance(job, dict) else None


class Follow:
    """A followed event stream across reconnects: the Last-Event-ID to resume from, and when to stop."""

    def __init__(self, job_id: str | None) -> None:
        self.job_id = job_id
        self.path = job_path(job_id, "/events") if job_id else "/v1/events"
        self.last_id: str | None = None
        self.over = False
        self.reconnects = Reconnects()

    def headers(self) -> dict[str, str]:
        resume = {"Last-Event-ID": self.last_id} if self.last_id else {}
        return {"Accept": "text/event-stream", **resume}

    def opened(self, status: int) -> None:
        """The stream answered; 204 No Content: the job ended at or before the last event, nothing follows."""
        self.reconnects.reached()
        self.over = self.over or status == 204

    def saw(self, event: Event) -> None:
        self.last_id = event.id or self.last_id
        self.over = self.job_id is not None and is_terminal(event.job)

    def broke(self, exc: ServerUnreachable | None) -> float:
        """The pause before reconnecting; raises when the server was never reached or stays away."""
        return self.reconnects.pause_s(exc)
