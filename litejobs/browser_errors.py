"""What a failed render tells its job: the target's or the input's fault in the codes a fetch uses, not
retried where a fetch is not; the rest as the browser's (browser_error, retried)."""

from __future__ import annotations

import asyncio
import re

from pyppeteer.errors import ElementHandleError, PyppeteerError
from pyppeteer.network_manager import Response

from litejobs import pyppeteer_fixes as fixes
from litejobs.errors import (
    BrowserCrashed,
    BrowserError,
    FetchError,
    JobError,
    NetworkError,
    TooManyRedirects,
    UpstreamStatus,
)

_NET_ERROR = re.compile(r"\bnet::(ERR_[A-Z0-9_]+)")
#: the target's connection failed or broke: retried, as a fetch's network_error is
_CONNECTION_FAILED = frozenset(
    {
        "ERR_CONNECTION_REFUSED",
        "ERR_CONNECTION_RESET",
        "ERR_CONNECTION_CLOSED",
        "ERR_CONNECTION_ABORTED",
        "ERR_CONNECTION_FAILED",
        "ERR_CONNECTION_TIMED_OUT",
        "ERR_TIMED_OUT",
        "ERR_ADDRESS_UNREACHABLE",
        "ERR_NAME_NOT_RESOLVED",
        "ERR_EMPTY_RESPONSE",
        "ERR_INVALID_HTTP_RESPONSE",
        "ERR_RESPONSE_HEADERS_TRUNCATED",
        "ERR_INCOMPLETE_CHUNKED_ENCODING",
        "ERR_INVALID_CHUNKED_ENCODING",
        "ERR_CONTENT_LENGTH_MISMATCH",
        "ERR_CONTENT_DECODING_FAILED",
        "ERR_TUNNEL_CONNECTION_FAILED",
    }
)
#: prefixes of the same: the egress proxy's refusals of an unknown name or a closed port come as SOCKS errors
_CONNECTION_FAILED_PREFIXES = ("ERR_SOCKS_", "ERR_SSL_", "ERR_HTTP2_")
#: URLs Chromium will not load at all, by what is wrong with them: not retried, as a fetch's fetch_error is
_REFUSED_URLS = {
    "ERR_UNSAFE_REDIRECT": "redirects to a URL browsers do not follow (file:, data:, ...)",
    "ERR_INVALID_REDIRECT": "redirects to an invalid URL",
    "ERR_UNSAFE_PORT": "is on a port browsers refuse to connect to",
    "ERR_INVALID_URL": "is not a valid URL",
    "ERR_DISALLOWED_URL_SCHEME": "has a scheme Chromium refuses",
    "ERR_UNKNOWN_URL_SCHEME": "has a scheme Chromium does not know",
}


def explain(exc: Exception, lost: asyncio.Future[str], url: str) -> Exception:
    """The JobError a failed render raises: a lost browser or a crashed page wins over what it caused."""
    if lost.done():
        return BrowserCrashed(f"the browser went away during the render: {lost.result()}")
    if isinstance(exc, fixes.Interrupted):
        return BrowserCrashed(f"the page crashed during the render: {exc.reason}")
    if isinstance(exc, PyppeteerError | ConnectionError):
        return _navigation_error(exc, url) or BrowserError(f"rendering {url} failed: {exc}")
    return exc


def _navigation_error(exc: Exception, url: str) -> JobError | None:
    """The fetch's error for a navigation Chromium refused for the target's or the URL's sake, if it was that."""
    found = _NET_ERROR.search(str(exc)) if isinstance(exc, fixes.NavigationFailed) else None
    if found is None:
        return None
    code = found.group(1)
    if code == "ERR_TOO_MANY_REDIRECTS":
        return TooManyRedirects(f"{url} redirected too many times (net::{code})")
    if code in _REFUSED_URLS:
        return FetchError(f"cannot render {url}: it {_REFUSED_URLS[code]} (net::{code})", retryable=False)
    if code.startswith("ERR_CERT_"):
        return NetworkError(f"the TLS certificate of {url} is not valid (net::{code})", retryable=False)
    if code in _CONNECTION_FAILED or code.startswith(_CONNECTION_FAILED_PREFIXES):
        if exc.cut_off:  # type: ignore[attr-defined]
            return NetworkError(f"the page at {url} broke off after its headers (net::{code})")
        return NetworkError(f"the connection to {url} failed (net::{code})")
    response = exc.response  # type: ignore[attr-defined]
    if response is not None and code == "ERR_HTTP_RESPONSE_CODE_FAILURE":
        return _error_without_page(url, response.status)
    if response is not None and code == "ERR_ABORTED":
        return _not_a_page(url, response)
    return None


def _error_without_page(url: str, status: int) -> JobError:
    """An error status with an empty body, for which Chromium shows its own error page instead."""
    if status >= 500 or status == 429:
        return UpstreamStatus(status)  # retried, as a fetch's is
    return BrowserError(f"{url} answered {status} with an empty body: there is no page to render", retryable=False)


def _not_a_page(url: str, response: Response) -> BrowserError:
    """A navigation Chromium aborted after the server answered: the answer is no page to render."""
    if response.status in (204, 205):
        message = f"{url} answered {response.status} with no content: there is no page to render"
        return BrowserError(message, retryable=False)
    headers = {name.lower(): value for name, value in response.headers.items()}
    shown = ", ".join(f"{name}: {headers[name]}" for name in ("content-type", "content-disposition") if name in headers)
    return BrowserError(
        f"{url} is a download, not a page ({shown or f'HTTP {response.status}'}): Chromium does not render it; "
        "fetch it without the browser",
        retryable=False,
    )


def refused_setting(exc: PyppeteerError, what: str) -> JobError | None:
    """Chromium's refusal of the job's cookies, headers, user agent or viewport ("Invalid cookie fields",
    "Invalid header name", "Invalid parameters ..."): the input's fault, not retried, as a fetch's is."""
    reason = str(exc).partition("): ")[2]
    if not reason.startswith("Invalid"):
        return None
    return FetchError(f"Chromium refused the job's {what}: {reason}", retryable=False)


def bad_selector(exc: Exception, selector: str) -> JobError | None:
    """A `wait_for` that is not a CSS selector would fail the same way on every attempt: not retried."""
    if isinstance(exc, ElementHandleError) and "is not a valid selector" in str(exc):
        return BrowserError(f"wait_for {selector!r} is not a valid CSS selector", retryable=False)
    return None


def unsendable_header(headers: dict[str, str]) -> JobError | None:
    """A header Chromium never sends from a page (Proxy-*: "Unsafe header"), which would fail every attempt."""
    for name in headers:
        if name.lower().startswith("proxy-"):
            message = f"Chromium does not send a {name} header from a rendered page: drop it or fetch the page"
            return FetchError(message, retryable=False)
    return None
