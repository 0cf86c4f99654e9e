"""RequestGuard and CredentialScope: decide each request a rendered page makes (blocked resource types, then the
network policy) and which of them carry the job's credentials."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

from litejobs.errors import BlockedAddress
from litejobs.netpolicy import parse_ip
from litejobs.render_request import BLOCKABLE

#: (host, port) -> the policy's refusal of a connection to it during this render, if the egress proxy refused one
ProxyRefusal = Callable[[str, int], BlockedAddress | None]


class PolicyLike(Protocol):
    def check_ip(self, ip: str, port: int | None = None) -> None:
        """Raise BlockedAddress if jobs may not reach `ip` (at `port`, where known)."""


def _no_refusal(host: str, port: int) -> BlockedAddress | None:
    return None


class RequestGuard:
    """Decides each paused request: abort blocked resource types, then URLs the policy refuses outright.

    It resolves no names. Every connection Chromium makes goes through the egress proxy
    (litejobs.egress_proxy), which resolves each name once, checks every address and connects to the address
    it checked. A second lookup here would cost a DNS round trip and an executor thread per host and page,
    and could only add an answer that is not the one used: DNS rebinding is exactly that disagreement, so
    checking here gave no defence the proxy does not give, only a false sense of one. What the guard still
    checks costs no I/O: the scheme, and an IP-literal host, so a refused literal fails before any
    connection is tried. It also turns a main-frame document the proxy refused into the render's
    BlockedAddress, so a refused page fails with `blocked_address` whether the guard or the proxy refused it.
    """

    def __init__(
        self,
        policy: PolicyLike,
        block: frozenset[str],
        main_frame_id: str,
        proxy_refusal: ProxyRefusal = _no_refusal,
    ) -> None:
        self._policy = policy
        self._blocked_types = {BLOCKABLE[name] for name in block}
        self._main_frame_id = main_frame_id
        self._proxy_refusal = proxy_refusal
        #: (host, port) of each main-frame document requested, redirect hops included
        self._documents: dict[tuple[str, int], None] = {}
        self.blocked_document: BlockedAddress | None = None

    async def decide(self, event: dict[str, Any]) -> str | None:
        if event.get("resourceType") in self._blocked_types:
            return "BlockedByClient"
        is_main = event.get("resourceType") == "Document" and event.get("frameId") == self._main_frame_id
        try:
            target = self._check(event["request"]["url"])
        except BlockedAddress as exc:
            if is_main and self.blocked_document is None:
                self.blocked_document = exc
            return "BlockedByClient"
        if is_main and target is not None:
            self._documents[target] = None
        return None

    def _check(self, url: str) -> tuple[str, int] | None:
        """Raise BlockedAddress for a scheme or an IP literal the policy refuses; (host, port) of a network URL."""
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob", "about"):
            return None  # never leaves the browser
        if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
            raise BlockedAddress(f"the network policy forbids {parts.scheme}: URLs")
        port = parts.port or (443 if parts.scheme in ("https", "wss") else 80)
        if parse_ip(parts.hostname) is not None:
            self._policy.check_ip(parts.hostname, port)
        return parts.hostname, port

    def raise_if_document_blocked(self) -> None:
        """Raise the refusal of a main-frame document, by the guard or by the egress proxy, if there was one."""
        if self.blocked_document is not None:
            raise self.blocked_document
        for host, port in self._documents:
            refusal = self._proxy_refusal(host, port)
            if refusal is not None:
                self.blocked_document = refusal
                raise refusal


#: what the fetcher drops on a redirect to another origin (litejobs.fetcher), lowercased
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or (443 if scheme in ("https", "wss") else 80)
    except ValueError:
        port = -1
    return scheme, (parts.hostname or "").lower(), port


class CredentialScope:
    """The job's credential headers, sent with the requests to the job URL's origin and with no other.

    Extra HTTP headers set on a page go with every request it makes: after a redirect to another origin,
    and to every third-party image, script and fetch(). So the credentials are kept out of them and added
    per request instead, when the request is paused for the RequestGuard. A redirect hop to another origin
    is a new request: Chromium does not carry headers added this way over to it.
    """

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self._origin = _origin(url)
        self.credentials = {name: value for name, value in headers.items() if name.lower() in CREDENTIAL_HEADERS}
        #: the job's other headers, which every request may carry (as the fetcher sends them after a redirect)
        self.others = {name: value for name, value in headers.items() if name.lower() not in CREDENTIAL_HEADERS}

    def headers_for(self, request: dict[str, Any]) -> list[dict[str, str]] | None:
        """The request's headers plus the credentials if it goes to the job's origin; None: send it as it is.

        A Cookie header of the job's comes before the cookies Chromium's jar adds for the URL.
        """
        if not self.credentials or _origin(request["url"]) != self._origin:
            return None
        headers = dict(request.get("headers") or {})
        names = {name.lower(): name for name in headers}
        for name, value in self.credentials.items():
            present = names.get(name.lower())
            if present is not None and name.lower() == "cookie":
                headers[present] = f"{value}; {headers[present]}"
            else:
                headers.pop(present or name, None)
                headers[name] = value
        return [{"name": name, "value": value} for name, value in headers.items()]
