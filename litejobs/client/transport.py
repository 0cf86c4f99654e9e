"""The sync client's urllib opener, whose connections read the answer a server gave before it stopped reading.

A server may answer as soon as it has read the headers (413 for a Content-Length past its limit) and
close without reading the body; the rest of the body then meets a reset or a broken pipe. Stock
urllib reports that send error and drops the answer, which is already waiting in the socket.
"""

from __future__ import annotations

import contextlib
import http.client
import urllib.request
from typing import Any

#: what sending into a connection the server has stopped reading raises
_PEER_STOPPED_READING = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


class _HttpConnection(http.client.HTTPConnection):
    """A connection that, when the server stops reading the request, goes on to read its answer.

    Should there be none, `getresponse()` raises the connection's error instead of the send's.
    """

    def send(self, data: Any) -> None:
        # the rest of the request is moot: getresponse() reads what the server said, if anything
        with contextlib.suppress(*_PEER_STOPPED_READING):
            super().send(data)


class _HttpsConnection(_HttpConnection, http.client.HTTPSConnection):
    pass


_CONNECTIONS: dict[type[http.client.HTTPConnection], type[http.client.HTTPConnection]] = {
    http.client.HTTPConnection: _HttpConnection,
    http.client.HTTPSConnection: _HttpsConnection,
}


class _ReadsEarlyAnswers(urllib.request.AbstractHTTPHandler):
    """Swaps the stock connection class urllib opens for its early-answer-reading twin."""

    def do_open(self, http_class: Any, req: urllib.request.Request, **http_conn_args: Any) -> Any:
        return super().do_open(_CONNECTIONS.get(http_class, http_class), req, **http_conn_args)


class _HttpHandler(_ReadsEarlyAnswers, urllib.request.HTTPHandler):
    pass


class _HttpsHandler(_ReadsEarlyAnswers, urllib.request.HTTPSHandler):
    pass


def build_opener() -> urllib.request.OpenerDirector:
    """urllib's default opener (proxies from the environment, redirects, HTTPError for 4xx/5xx) with
    connections that read an answer the server sent before reading the whole body."""
    return urllib.request.build_opener(_HttpHandler, _HttpsHandler)
