"""Fetcher: one pooled aiohttp session that turns a URL into a Page within time, size and network limits."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from urllib.parse import urljoin

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from multidict import CIMultiDict
from yarl import URL

from litejobs.charsets import mime_of, page_encoding
from litejobs.config import FetchConfig
from litejobs.errors import (
    BlockedAddress,
    FetchError,
    FetchTimeout,
    NetworkError,
    TooManyRedirects,
)
from litejobs.fetch_body import BodyCap, read_body
from litejobs.fetch_cookies import FetchCookies, GivenCookie, origin
from litejobs.fields import url_problem
from litejobs.netpolicy import NetworkPolicy

DEFAULT_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_BODY_HEADERS = ("Content-Type", "Content-Length", "Content-Encoding", "Transfer-Encoding")
# Sent to the requested origin only: a redirect to another origin must not carry the caller's secrets.
_CREDENTIAL_HEADERS = ("Authorization", "Proxy-Authorization", "Cookie")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
#: headers aiohttp alone sets: they frame the message or govern the connection, which all jobs share
#: (RFC 9112 6.1-6.3, RFC 9110 7.6.1 and 10.1.1). A job's input is refused with them at submit
#: (kinds/fetch_input.py); this is for every other caller (plugins).
FRAMING_HEADERS = frozenset(
    {
        "connection",
        "content-length",
        "expect",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


@dataclass
class Page:
    """One fetched response, after redirects."""

    url: str  #: as requested
    final_url: str  #: after redirects
    status_code: int
    headers: dict[str, str]  #: as received; repeated headers joined with ", "
    content_type: str  #: mime type only, lowercased ("" if none)
    body: bytes  #: content-decoded (gzip, deflate), at most max_body_bytes
    encoding: str  #: the charset `text` decodes with
    elapsed_ms: float
    redirects: list[str] = field(default_factory=list)  #: every URL a redirect led to; last is final_url
    truncated: bool = False  #: the body was cut at the cap (fetch(truncate=True)); the rest was not read

    @property
    def text(self) -> str:
        """The body decoded with `encoding`; invalid bytes become U+FFFD, never an error."""
        try:
            return self.body.decode(self.encoding, errors="replace")
        except LookupError:
            return self.body.decode("utf-8", errors="replace")


class PolicyResolver(AbstractResolver):
    """Resolves with `inner`, then drops each address the policy refuses.

    The check sits on the addresses the socket will connect to, so a name that resolves to a
    forbidden address (DNS rebinding included) is refused before any packet is sent to it.
    """

    def __init__(self, inner: AbstractResolver, policy: NetworkPolicy) -> None:
        self._inner = inner
        self._policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:
            results = await self._inner.resolve(host, port, family)
        except OSError as exc:
            raise NetworkError(f"could not resolve {host}: {_reason(exc)}") from exc
        if not results:
            raise NetworkError(f"could not resolve {host}: it has no addresses")
        refusals = [self._policy.refusal(result["host"], result["port"]) for result in results]
        allowed = [result for result, refusal in zip(results, refusals, strict=True) if refusal is None]
        if not allowed:
            ip = results[0]["host"]
            raise BlockedAddress(f"the network policy refuses {host}: it resolves to {ip}, which {refusals[0]}")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


@dataclass(frozen=True)
class _Hop:
    """One request of a fetch: the first one, or where a redirect leads."""

    url: str
    method: str
    headers: CIMultiDict[str]
    body: bytes | None


@dataclass(frozen=True)
class _Answer:
    url: str
    status_code: int
    headers: dict[str, str]
    body: bytes
    content_type: str  #: the Content-Type header a browser would go by
    truncated: bool = False


class Fetcher:
    """Fetches URLs through one pooled, policy-checked aiohttp session; use it as `async with`."""

    def __init__(self, config: FetchConfig, policy: NetworkPolicy, *, resolver: AbstractResolver | None = None) -> None:
        """`resolver` replaces the system DNS lookup (tests); the policy is applied to its answers."""
        self.config = config
        self.policy = policy
        self._inner_resolver = resolver
        self._resolver: PolicyResolver | None = None
        self._session: aiohttp.ClientSession | None = None
        self._one_shot: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Fetcher:
        inner = self._inner_resolver or aiohttp.DefaultResolver()
        self._resolver = PolicyResolver(inner, self.policy)
        self._session = self._new_session(force_close=False)
        # A request with a body goes on a connection used once: a target that leaves a body unread
        # (a "CL.0" desync) would take its bytes for the next request on the connection, which
        # could be another owner's; bodiless requests carry no bytes a job chooses beyond headers.
        self._one_shot = self._new_session(force_close=True)
        return self

    def _new_session(self, *, force_close: bool) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self.config.connections, resolver=self._resolver, force_close=force_close
        )
        return aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,  # decompressed here, under the size cap (gzip bombs)
            trust_env=False,  # a proxy from the environment would bypass the network policy
            cookie_jar=aiohttp.DummyCookieJar(),  # jobs must not see each other's cookies
            timeout=aiohttp.ClientTimeout(),  # fetch() keeps one deadline for the whole exchange
        )

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        sessions = (self._session, self._one_shot)
        self._session = self._one_shot = None
        resolver, self._resolver = self._resolver, None
        for session in sessions:
            if session is not None:
                await session.close()
        if resolver is not None and self._inner_resolver is None:
            await resolver.close()

    async def fetch(
        self,
        url: str,
        *,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        body: bytes | str | None = None,
        timeout_s: float | None = None,
        max_body_bytes: int | None = None,
        truncate: bool = False,
        cookies: Sequence[GivenCookie] = (),
        before_redirect: Callable[[str], None] | None = None,
    ) -> Page:
        """Fetch `url`, following redirects; any HTTP status is a Page, failures are FetchErrors.

        `truncate`: a body longer than the cap is cut there (`Page.truncated`) instead of refused,
        for files whose start is all a caller reads (robots.txt). `before_redirect(url)` is called
        before each redirect is followed, so a caller can refuse one (a crawl's robots.txt and
        duplicates): whatever it raises ends the fetch. `cookies` are sent to each hop they match on
        the origin of `url` (FetchCookies).
        """
        if self._session is None or self._one_shot is None:
            raise RuntimeError("the Fetcher is not open: use `async with Fetcher(...) as fetcher`")
        problem = url_problem(url)
        if problem:
            raise FetchError(f"cannot fetch {url!r}: it {problem}", retryable=False)
        if not _TOKEN.match(method):
            raise FetchError(f"invalid request method {method!r}", retryable=False)
        timeout_s = self.config.timeout_s if timeout_s is None else timeout_s
        cap = BodyCap(self.config.max_body_bytes if max_body_bytes is None else max_body_bytes, truncate)
        data = body.encode() if isinstance(body, str) else body
        first = _Hop(url, method.upper(), self._request_headers(headers), data)
        # Cookies live for one fetch, so a site that sets one and redirects (a consent or session
        # bootstrap) works, and nothing leaks into another job.
        jar = FetchCookies(url, cookies)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout_s):
                answer, redirects = await self._follow(first, jar, cap, before_redirect)
        except TimeoutError:
            raise FetchTimeout(f"{url} did not answer within {timeout_s:g} s (connect, headers and body)") from None
        return _page(url, answer, redirects, (time.perf_counter() - started) * 1000)

    def _request_headers(self, extra: Mapping[str, str] | None) -> CIMultiDict[str]:
        headers = CIMultiDict(
            {"User-Agent": self.config.user_agent, "Accept": DEFAULT_ACCEPT, "Accept-Encoding": "gzip, deflate"}
        )
        for name, value in (extra or {}).items():
            if not _TOKEN.match(name) or any(ch in str(value) for ch in "\r\n\x00"):
                raise FetchError(f"invalid request header {name!r}", retryable=False)
            if name.lower() in FRAMING_HEADERS:
                raise FetchError(
                    f"the request header {name!r} is set by the HTTP client, not by a job", retryable=False
                )
            headers[name] = str(value)
        return headers

    async def _follow(
        self,
        hop: _Hop,
        jar: FetchCookies,
        cap: BodyCap,
        before_redirect: Callable[[str], None] | None,
    ) -> tuple[_Answer, list[str]]:
        redirects: list[str] = []
        first = hop
        for _ in range(self.config.max_redirects + 1):
            outcome = await self._exchange(hop, jar, cap)
            if isinstance(outcome, _Answer):
                return outcome, redirects
            if before_redirect is not None:
                before_redirect(outcome.url)
            hop = outcome
            redirects.append(hop.url)
        raise TooManyRedirects(
            f"{first.url} redirected more than {self.config.max_redirects} times "
            f"(fetch.max_redirects); the last redirect led to {hop.url}"
        )

    async def _exchange(self, hop: _Hop, jar: FetchCookies, cap: BodyCap) -> _Answer | _Hop:
        """One request: the final answer, or the hop its redirect points to."""
        self._check_literal_host(hop.url)
        session = self._session if hop.body is None else self._one_shot
        assert session is not None  # fetch() checked
        try:
            async with session.request(
                hop.method,
                hop.url,
                headers=jar.headers_for(hop.headers, hop.url),
                data=hop.body,
                allow_redirects=False,
            ) as resp:
                jar.update(resp)
                location = resp.headers.get("Location") if resp.status in _REDIRECT_STATUSES else None
                if location is not None:
                    return _redirected(hop, resp.status, location)
                body, truncated = await read_body(resp, hop.url, hop.method, cap)
                raw = resp.raw_headers
                return _Answer(hop.url, resp.status, _joined_headers(raw), body, _content_type(raw), truncated)
        except TimeoutError:
            raise
        except (aiohttp.ClientError, OSError) as exc:
            raise _network_error(exc, hop.url) from exc

    def _check_literal_host(self, url: str) -> None:
        """aiohttp connects to IP-literal hosts without asking the resolver, so check them here."""
        parsed = URL(url)
        host = parsed.raw_host or ""
        # The same test aiohttp uses to skip the resolver; check_ip refuses what it cannot parse.
        if ":" in host or host.replace(".", "").isdigit():
            self.policy.check_ip(host, parsed.port)


def _page(url: str, answer: _Answer, redirects: list[str], elapsed_ms: float) -> Page:
    return Page(
        url=url,
        final_url=answer.url,
        status_code=answer.status_code,
        headers=answer.headers,
        content_type=mime_of(answer.content_type),
        body=answer.body,
        encoding=page_encoding(answer.content_type, answer.body),
        elapsed_ms=elapsed_ms,
        redirects=redirects,
        truncated=answer.truncated,
    )


def _redirected(hop: _Hop, status: int, location: str) -> _Hop:
    """The next hop, as browsers do it: 303 (and 301/302 after POST) turn into a GET without body."""
    try:
        target = str(URL(urljoin(hop.url, location.strip())))
    except ValueError:
        target = location
    problem = url_problem(target)
    if problem:
        raise FetchError(f"{hop.url} redirected to {target!r}, which cannot be fetched: it {problem}", retryable=False)
    method, body, headers = hop.method, hop.body, hop.headers
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        method, body, headers = "GET", None, _without(headers, _BODY_HEADERS)
    if origin(target) != origin(hop.url):
        headers = _without(headers, _CREDENTIAL_HEADERS)
    return _Hop(target, method, headers, body)


def _without(headers: CIMultiDict[str], names: tuple[str, ...]) -> CIMultiDict[str]:
    kept = headers.copy()
    for name in names:
        kept.popall(name, None)
    return kept


def _joined_headers(raw_headers: tuple[tuple[bytes, bytes], ...]) -> dict[str, str]:
    """Response headers with their original case; a repeated header's values joined with ", "."""
    joined: dict[str, str] = {}
    spelled: dict[str, str] = {}
    for raw_name, raw_value in raw_headers:
        name = raw_name.decode("latin-1")
        value = raw_value.decode("utf-8", errors="replace")
        key = spelled.setdefault(name.lower(), name)
        joined[key] = f"{joined[key]}, {value}" if key in joined else value
    return joined


def _content_type(raw_headers: tuple[tuple[bytes, bytes], ...]) -> str:
    """The last Content-Type: a repeated one is not a list of types, and browsers go by the last
    (Fetch, "extract a MIME type"), for the MIME type and the charset alike."""
    values = [value for name, value in raw_headers if name.lower() == b"content-type"]
    return values[-1].decode("utf-8", errors="replace") if values else ""


def _network_error(exc: BaseException, url: str) -> FetchError:
    """A FetchError whose message says, for a person, what went wrong with the connection."""
    parsed = URL(url)
    host = parsed.raw_host or "?"
    where = f"[{host}]:{parsed.port}" if ":" in host else f"{host}:{parsed.port}"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return NetworkError(f"the TLS certificate of {where} is not valid: {exc.certificate_error}", retryable=False)
    if isinstance(exc, aiohttp.ClientSSLError):
        return NetworkError(f"the TLS handshake with {where} failed: {_reason(exc)}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            return NetworkError(f"connection refused by {where}")
        return NetworkError(f"could not connect to {where}: {_reason(exc.os_error)}")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return NetworkError(f"{where} closed the connection before answering")
    if isinstance(exc, aiohttp.ClientPayloadError):
        # aiohttp's own text nests reprs; the cause (e.g. ContentLengthError) has the plain story.
        detail = getattr(exc.__cause__, "message", "") or _reason(exc)
        return NetworkError(f"the connection to {where} broke while reading the body: {detail}")
    if isinstance(exc, aiohttp.ClientResponseError):
        detail = str(exc.message).strip().splitlines()[0].rstrip(":") if str(exc.message).strip() else "?"
        return NetworkError(f"{where} sent an invalid HTTP response ({detail})")
    if isinstance(exc, aiohttp.InvalidURL):
        return FetchError(f"cannot fetch {url!r}: it is not a valid URL", retryable=False)
    return NetworkError(f"the connection to {where} failed: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
