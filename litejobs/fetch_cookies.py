"""One fetch's cookies: those the caller gives and those its responses set, matched again at every hop.
Apart from fetcher.py, which it serves."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from http.cookies import BaseCookie

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from litejobs.errors import FetchError

_FORBIDDEN = frozenset("\r\n\x00")


def origin(url: str | URL) -> tuple[str, str, int | None]:
    """Scheme, host and port: the caller's credentials for a URL go to this origin and no other."""
    parsed = URL(url)
    return parsed.scheme, (parsed.raw_host or "").lower(), parsed.port


@dataclass(frozen=True)
class GivenCookie:
    """A cookie the caller sends with a fetch, scoped as a browser scopes one."""

    name: str
    value: str
    domain: str = ""  #: lowercase, no leading dot: this host and its subdomains; "" for the URL's host
    path: str = "/"  #: this path and those under it
    secure: bool = False  #: over https only

    def matches(self, url: URL) -> bool:
        host, path = (url.raw_host or "").lower(), url.raw_path or "/"
        if self.domain and host != self.domain and not host.endswith(f".{self.domain}"):
            return False
        if path != self.path and not path.startswith(self.path.rstrip("/") + "/"):
            return False
        return url.scheme == "https" or not self.secure


class FetchCookies:
    """One fetch's cookie jar, asked again at every hop, so a redirect gets the cookies of where it leads.

    The caller's cookies go only to the origin of the URL fetched (as its other credentials do),
    including when a redirect comes back to it; those a response sets follow aiohttp's (RFC 6265)
    rules and, sharing a name with a caller's cookie, replace it. The aiohttp CookieJar is made only
    once a response sets a cookie (making one for every fetch was 2% of a busy server's loop).
    """

    def __init__(self, url: str, given: Sequence[GivenCookie] = ()) -> None:
        for cookie in given:
            if _FORBIDDEN & set(cookie.name + cookie.value):
                raise FetchError(f"invalid cookie {cookie.name!r}", retryable=False)
        self._given = tuple(given)
        self._origin = origin(url)
        self._jar: aiohttp.CookieJar | None = None

    def update(self, resp: aiohttp.ClientResponse) -> None:
        if resp.cookies:
            if self._jar is None:
                self._jar = aiohttp.CookieJar(unsafe=True)
            self._jar.update_cookies(resp.cookies, resp.url)

    def headers_for(self, headers: CIMultiDict[str], url: str) -> CIMultiDict[str]:
        """`headers` with the cookies for `url` after any `Cookie` header the caller set."""
        target = URL(url)
        set_by_responses: BaseCookie[str] = self._jar.filter_cookies(target) if self._jar is not None else BaseCookie()
        pairs = [f"{c.name}={c.value}" for c in self._given_for(target) if c.name not in set_by_responses]
        pairs += [f"{morsel.key}={morsel.coded_value}" for morsel in set_by_responses.values()]
        if not pairs:
            return headers
        joined = "; ".join(pairs)
        merged = headers.copy()
        merged["Cookie"] = f"{merged['Cookie']}; {joined}" if "Cookie" in merged else joined
        return merged

    def _given_for(self, url: URL) -> list[GivenCookie]:
        if not self._given or origin(url) != self._origin:
            return []
        return [cookie for cookie in self._given if cookie.matches(url)]
