"""EgressProxy: the SOCKS5 server Chromium must connect through; it resolves each name once and applies the policy.

Chromium sends the proxy the host name, never an address it resolved itself (verified with Chromium 156 for
http, https and ws, IP literals included), so this is the one place where a page's connections are resolved.
Each CONNECT is resolved once, every address is checked, and the proxy connects to a checked address: a name
that answers a public address first and 127.0.0.1 next (DNS rebinding) cannot slip between check and use, and
WebSockets, which request interception never sees, pass the same check.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import socket
import struct
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from ipaddress import IPv6Address, ip_address
from typing import Any

from litejobs.browser_guard import PolicyLike
from litejobs.errors import BlockedAddress
from litejobs.netpolicy import parse_ip

#: (host, port) -> the addresses to try, in order
Resolver = Callable[[str, int], Awaitable[list[str]]]

# RFC 1928 reply codes
_SUCCEEDED, _GENERAL_FAILURE, _NOT_ALLOWED, _HOST_UNREACHABLE, _REFUSED = 0, 1, 2, 4, 5
_COMMAND_NOT_SUPPORTED, _ADDRESS_TYPE_NOT_SUPPORTED = 7, 8
_IPV4, _DOMAIN, _IPV6 = 1, 3, 4
_CHUNK = 64 * 1024
#: refusals remembered for telling a refused document from other failures; a render looks one up within seconds
_REMEMBERED_REFUSALS = 256


class _Refused(Exception):
    """A CONNECT that gets a SOCKS error reply instead of a tunnel."""

    def __init__(self, reply: int) -> None:
        super().__init__(reply)
        self.reply = reply


async def system_resolve(host: str, port: int) -> list[str]:
    """The system resolver's addresses for host, in its order, without duplicates or IPv6 zone ids."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))


class HostRules:
    """Chromium's --host-resolver-rules (`MAP pattern ~NOTFOUND|host[:port]`, `EXCLUDE pattern`), applied by the proxy.

    Chromium skips its own resolver for proxied connections, so the rules that keep it from resolving its
    update and sign-in hosts no longer reach them; the proxy applies them instead. As in Chromium, an EXCLUDE
    that matches the host wins, then the first MAP whose pattern matches the host or host:port.
    """

    def __init__(self, rules: str = "") -> None:
        self._maps: list[tuple[str, str]] = []
        self._excludes: list[str] = []
        for rule in filter(None, (part.strip() for part in rules.split(","))):
            words = rule.lower().split()
            if len(words) == 3 and words[0] == "map":
                self._maps.append((words[1], words[2]))
            elif len(words) == 2 and words[0] == "exclude":
                self._excludes.append(words[1])
            else:
                raise ValueError(f"not a host resolver rule: {rule!r}")

    def rewrite(self, host: str, port: int) -> tuple[str, int] | None:
        """Where a CONNECT to host:port goes instead, or None when the rules say the name does not exist."""
        host = host.lower()
        if any(fnmatch.fnmatchcase(host, pattern) for pattern in self._excludes):
            return host, port
        for pattern, target in self._maps:
            if fnmatch.fnmatchcase(host, pattern) or fnmatch.fnmatchcase(f"{host}:{port}", pattern):
                return None if target == "~notfound" else _host_port(target, port)
        return host, port


class EgressProxy:
    """A SOCKS5 server (RFC 1928: no authentication, CONNECT only) on 127.0.0.1, port chosen by the system.

    Replies 0x02 when the policy refuses any address of the name, 0x04 when it does not resolve (or the
    rules say so), 0x05 or 0x01 when the connection fails. A client gets `handshake_timeout_s` to say where
    it goes; resolving, then connecting, get `connect_timeout_s` each. At most `max_tunnels` connections at
    once, more than Chromium opens (256 sockets and 255 WebSockets).
    """

    def __init__(
        self,
        policy: PolicyLike,
        *,
        resolver: Resolver = system_resolve,
        rules: HostRules | None = None,
        handshake_timeout_s: float = 5.0,
        connect_timeout_s: float = 10.0,
        max_tunnels: int = 512,
    ) -> None:
        self._policy = policy
        self._resolve = resolver
        self._rules = rules or HostRules()
        self._handshake_timeout_s = handshake_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._max_tunnels = max_tunnels
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[Any], list[asyncio.StreamWriter]] = {}
        self._refused: OrderedDict[tuple[str, int], tuple[int, BlockedAddress]] = OrderedDict()
        self._closing = False
        self.port = 0
        #: CONNECTs the policy refused, since start
        self.refusals = 0
        self.stats = {"tunnels_opened": 0, "turned_away": 0}

    async def __aenter__(self) -> EgressProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def tunnels_open(self) -> int:
        return len(self._connections)

    async def start(self) -> int:
        """Listen on 127.0.0.1 (a free port); the port."""
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        """Stop listening and cut every connection at once; returns when their tasks have ended."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for task, writers in list(self._connections.items()):
            for writer in writers:
                writer.transport.abort()
            task.cancel()
        if self._connections:
            await asyncio.wait(set(self._connections), timeout=2.0)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None

    def refusal(self, host: str, port: int, *, after: int = 0) -> BlockedAddress | None:
        """The policy's refusal of a CONNECT to host:port, if one came after refusal number `after`."""
        found = self._refused.get((host.lower(), port))
        return found[1] if found is not None and found[0] > after else None

    # -- one client connection -----------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        peer = writer.get_extra_info("peername")
        if self._closing or len(self._connections) >= self._max_tunnels or not _is_loopback(peer):
            self.stats["turned_away"] += 1
            writer.transport.abort()
            return
        writers = self._connections[task] = [writer]
        try:
            try:
                async with asyncio.timeout(self._handshake_timeout_s):
                    host, port = await _read_connect(reader, writer)
                upstream_reader, upstream = await self._open(host, port)
            except _Refused as refused:
                writer.write(_reply(refused.reply))
                return
            except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
                return
            writers.append(upstream)
            writer.write(_reply(_SUCCEEDED, upstream.get_extra_info("sockname")))
            self.stats["tunnels_opened"] += 1
            await _pipe_both_ways(reader, writer, upstream_reader, upstream)
        except Exception:
            pass  # a client or target that misbehaves ends its own connection, nothing else
        except asyncio.CancelledError:
            pass  # close() cut it; Python 3.11's start_server logs a connection task that ends cancelled
        finally:
            try:
                for each in writers:
                    await _close_writer(each, abort=self._closing)
            finally:
                del self._connections[task]  # only now: close() must see a connection until its sockets are shut

    async def _open(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Resolve host once, check every address, connect to the first checked one that answers."""
        target = self._rules.rewrite(host, port)
        if target is None:
            raise _Refused(_HOST_UNREACHABLE)
        addresses = await self._addresses(*target)
        try:
            for ip in addresses:
                self._policy.check_ip(ip, target[1])
        except BlockedAddress as exc:
            self.refusals += 1
            message = str(exc) if parse_ip(host) is not None else f"{host} resolves to {ip}: {exc}"
            self._remember((host, port), BlockedAddress(message))
            raise _Refused(_NOT_ALLOWED) from None
        failure: OSError | None = None
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                for ip in addresses:  # the checked addresses, never a new lookup
                    try:
                        return await asyncio.open_connection(ip, target[1])
                    except OSError as exc:
                        failure = exc
        except TimeoutError:
            pass
        raise _Refused(_REFUSED if isinstance(failure, ConnectionRefusedError) else _GENERAL_FAILURE)

    async def _addresses(self, host: str, port: int) -> list[str]:
        literal = parse_ip(host)
        if literal is not None:
            return [str(literal)]
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                addresses = await self._resolve(host, port)
        except (OSError, UnicodeError):  # TimeoutError is an OSError
            raise _Refused(_HOST_UNREACHABLE) from None
        if not addresses:
            raise _Refused(_HOST_UNREACHABLE)
        return addresses

    def _remember(self, key: tuple[str, int], refusal: BlockedAddress) -> None:
        self._refused.pop(key, None)
        self._refused[key] = (self.refusals, refusal)
        while len(self._refused) > _REMEMBERED_REFUSALS:
            self._refused.popitem(last=False)


# -- the SOCKS5 wire format ---------------------------------------------------------------------------------


async def _read_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[str, int]:
    """The greeting and the request of RFC 1928 §3-4: (host, port) of a CONNECT, or _Refused."""
    version, count = await reader.readexactly(2)
    if version != 5:
        raise ConnectionError("not SOCKS5")
    methods = await reader.readexactly(count)
    if 0 not in methods:
        writer.write(b"\x05\xff")  # no acceptable method: the client must close
        raise ConnectionError("the client offers no method without authentication")
    writer.write(b"\x05\x00")
    version, command, _reserved, address_type = await reader.readexactly(4)
    if version != 5:
        raise ConnectionError("not SOCKS5")
    if address_type == _IPV4:
        host = socket.inet_ntop(socket.AF_INET, await reader.readexactly(4))
    elif address_type == _IPV6:
        host = socket.inet_ntop(socket.AF_INET6, await reader.readexactly(16))
    elif address_type == _DOMAIN:
        (length,) = await reader.readexactly(1)
        raw = await reader.readexactly(length)
        try:
            host = raw.decode("ascii")  # Chromium sends IDNs as punycode
        except UnicodeDecodeError:
            raise _Refused(_HOST_UNREACHABLE) from None
    else:
        raise _Refused(_ADDRESS_TYPE_NOT_SUPPORTED)
    (port,) = struct.unpack(">H", await reader.readexactly(2))
    if command != 1:
        raise _Refused(_COMMAND_NOT_SUPPORTED)
    return host, port


def _reply(code: int, bound: Any = None) -> bytes:
    """A reply to the request: the code, and the address the proxy connected from (zeros on failure)."""
    host, port = (bound[0], bound[1]) if bound else ("0.0.0.0", 0)
    addr = ip_address(host)
    kind = _IPV6 if isinstance(addr, IPv6Address) else _IPV4
    return bytes((5, code, 0, kind)) + addr.packed + struct.pack(">H", port)


async def _pipe_both_ways(
    client_reader: asyncio.StreamReader,
    client: asyncio.StreamWriter,
    upstream_reader: asyncio.StreamReader,
    upstream: asyncio.StreamWriter,
) -> None:
    """Copy bytes each way until either side closes (or fails); then the tunnel ends."""
    directions = {
        asyncio.ensure_future(_copy(client_reader, upstream)),
        asyncio.ensure_future(_copy(upstream_reader, client)),
    }
    try:
        await asyncio.wait(directions, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for direction in directions:
            direction.cancel()
        await asyncio.wait(directions)
        for direction in directions:
            if not direction.cancelled():
                direction.exception()  # a reset is how many tunnels end


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(_CHUNK):
        writer.write(data)
        await writer.drain()


async def _close_writer(writer: asyncio.StreamWriter, *, abort: bool) -> None:
    """Close after what is buffered is sent, but give a peer that stops reading 5 seconds, then cut it."""
    if abort:
        writer.transport.abort()
        return
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 5.0)
    except (TimeoutError, OSError):
        writer.transport.abort()


def _host_port(target: str, default_port: int) -> tuple[str, int]:
    """(host, port) of a MAP rule's target: example.org, example.org:8080, [::1]:8080 or ::1."""
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if target.count(":") == 1:
        host, _, port = target.partition(":")
        return host, int(port)
    return target, default_port


def _is_loopback(peer: Any) -> bool:
    try:
        return bool(peer) and ip_address(peer[0]).is_loopback
    except ValueError:
        return False
