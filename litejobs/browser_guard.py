"""RequestGuard: decides each request a rendered page makes: blocked resource types, then the network policy."""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Protocol
from urllib.parse import urlsplit

from litejobs.errors import BlockedAddress
from litejobs.render_request import BLOCKABLE


class PolicyLike(Protocol):
    def check_ip(self, ip: str) -> None:
        """Raise BlockedAddress if jobs may not reach `ip`."""


class RequestGuard:
    """Decides each paused request: abort blocked resource types, then check every address of its host."""

    def __init__(self, policy: PolicyLike, block: frozenset[str], main_frame_id: str) -> None:
        self._policy = policy
        self._blocked_types = {BLOCKABLE[name] for name in block}
        self._main_frame_id = main_frame_id
        self._addresses: dict[tuple[str, int], list[str]] = {}
        self.blocked_document: BlockedAddress | None = None

    async def decide(self, event: dict[str, Any]) -> str | None:
        if event.get("resourceType") in self._blocked_types:
            return "BlockedByClient"
        try:
            await self._check(event["request"]["url"])
        except BlockedAddress as exc:
            is_main = event.get("resourceType") == "Document" and event.get("frameId") == self._main_frame_id
            if is_main and self.blocked_document is None:
                self.blocked_document = exc
            return "BlockedByClient"
        except OSError:
            return "NameNotResolved"
        return None

    async def _check(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob", "about"):
            return  # never leaves the browser
        if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
            raise BlockedAddress(f"the network policy forbids {parts.scheme}: URLs")
        port = parts.port or (443 if parts.scheme in ("https", "wss") else 80)
        for ip in await self._resolve(parts.hostname, port):
            self._policy.check_ip(ip)

    async def _resolve(self, host: str, port: int) -> list[str]:
        key = (host, port)
        if key not in self._addresses:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            self._addresses[key] = sorted({str(info[4][0]).split("%")[0] for info in infos})
        return self._addresses[key]

    def raise_if_document_blocked(self) -> None:
        if self.blocked_document is not None:
            raise self.blocked_document
