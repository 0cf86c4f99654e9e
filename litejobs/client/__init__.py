"""The Python SDK: `Client` (sync, urllib) and `AsyncClient` (aiohttp) for the native API.

Both have the same methods and raise the same typed errors: each error code of the API is its class
in litejobs.errors, and a server that cannot be reached is `ServerUnreachable`. This package imports
only litejobs.jobs and litejobs.errors from litejobs, so it can be lifted out with them.

    errors.py   ServerUnreachable, RemoteError; the error answer → exception mapping, Retry-After, and
                RateLimitPatience: which calls wait out `429 rate_limited`, how long
    sse.py      Event, the text/event-stream parser, a stream followed across reconnects, its read timeout
    urls.py     the default server URL, job paths, query strings
    waiting.py  waiting for a job: terminal states, long-poll budget, change notices, the reconnect budget
    transport.py  Client's urllib opener, which reads an answer the server sent before it read the body
    sync.py     Client
    aio.py      AsyncClient
"""

from litejobs.client.aio import AsyncClient
from litejobs.client.errors import RemoteError, ServerUnreachable
from litejobs.client.errors import api_error as api_error
from litejobs.client.errors import retry_after_s as retry_after_s
from litejobs.client.sse import STREAM_READ_S as STREAM_READ_S
from litejobs.client.sse import Event
from litejobs.client.sse import SseParser as SseParser
from litejobs.client.sync import Client
from litejobs.client.urls import DEFAULT_URL as DEFAULT_URL
from litejobs.client.waiting import MAX_WAIT_S as MAX_WAIT_S
from litejobs.client.waiting import OnChange as OnChange
from litejobs.client.waiting import is_terminal as is_terminal

__all__ = ["AsyncClient", "Client", "Event", "RemoteError", "ServerUnreachable"]
