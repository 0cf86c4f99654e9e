"""The egress proxy alone: SOCKS5 spoken to it by a real client, against listeners on 127.0.0.1 and 127.0.0.2."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from typing import Any

import pytest

from litejobs.browser import LOOPBACK_ONLY_RULES
from litejobs.egress_proxy import EgressProxy, HostRules
from tests.egress_support import POLICY, Listener, listener_pair, rebinding, resolving, run


async def socks_connect(
    proxy_port: int, host: str, port: int, *, address_type: int = 3, command: int = 1
) -> tuple[int, asyncio.StreamReader, asyncio.StreamWriter]:
    """Speak RFC 1928 to the proxy: no-auth greeting, then CONNECT; (reply code, reader, writer)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
    writer.write(b"\x05\x01\x00")
    assert await reader.readexactly(2) == b"\x05\x00"
    if address_type == 1:
        address = socket.inet_pton(socket.AF_INET, host)
    elif address_type == 4:
        address = socket.inet_pton(socket.AF_INET6, host)
    else:
        address = bytes([len(host)]) + host.encode()
    writer.write(bytes((5, command, 0, address_type)) + address + struct.pack(">H", port))
    version, code, _reserved, bound_type = await reader.readexactly(4)
    assert version == 5
    await reader.readexactly((16 if bound_type == 4 else 4) + 2)
    return code, reader, writer


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> bytes:
    writer.write(data)
    return await reader.read(1024)


def proxy_tasks() -> list[asyncio.Task[Any]]:
    """Tasks of any EgressProxy still running in this loop."""
    names = ("EgressProxy._serve", "_copy")
    return [t for t in asyncio.all_tasks() if not t.done() and t.get_coro().__qualname__ in names]  # type: ignore[union-attr]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# -- the proxy alone, with a real SOCKS5 client ---------------------------------------------------------------


def test_an_allowed_target_gets_bytes_through_both_ways() -> None:
    async def body() -> None:
        target = Listener()
        port = await target.start("127.0.0.1")
        resolver = resolving({"allowed.test": ["127.0.0.1"]})
        async with EgressProxy(POLICY, resolver=resolver) as proxy:
            for host, address_type in (("allowed.test", 3), ("127.0.0.1", 3), ("127.0.0.1", 1)):
                code, reader, writer = await socks_connect(proxy.port, host, port, address_type=address_type)
                assert code == 0
                assert await exchange(reader, writer, b"ping") == b"127.0.0.1:ping"
                assert await exchange(reader, writer, b"again") == b"127.0.0.1:again"
                writer.close()
            assert proxy.stats["tunnels_opened"] == 3 and proxy.refusals == 0
        await target.close()
        assert target.accepted == 3

    run(body())


def test_ipv6_targets_by_address_and_by_literal_name() -> None:
    async def body() -> None:
        target = Listener()
        port = await target.start("::1")
        async with EgressProxy(POLICY) as proxy:
            for address_type in (4, 3):
                code, reader, writer = await socks_connect(proxy.port, "::1", port, address_type=address_type)
                assert code == 0
                assert await exchange(reader, writer, b"six") == b"::1:six"
                writer.close()
        await target.close()

    run(body())


def test_a_forbidden_address_is_refused_with_0x02_and_never_connected() -> None:
    async def body() -> None:
        forbidden = Listener()
        port = await forbidden.start("127.0.0.2")
        resolver = resolving({"evil.test": ["127.0.0.2"]})
        async with EgressProxy(POLICY, resolver=resolver) as proxy:
            for host, address_type in (("127.0.0.2", 1), ("127.0.0.2", 3), ("evil.test", 3)):
                code, _reader, writer = await socks_connect(proxy.port, host, port, address_type=address_type)
                assert code == 0x02
                writer.close()
            assert proxy.refusals == 3
            refusal = proxy.refusal("evil.test", port)
            assert refusal is not None and "evil.test resolves to 127.0.0.2" in str(refusal)
            assert proxy.refusal("evil.test", port, after=3) is None
        await forbidden.close()
        assert forbidden.accepted == 0

    run(body())


def test_a_rebinding_name_is_connected_to_the_address_the_proxy_checked() -> None:
    async def body() -> None:
        allowed, forbidden, port = await listener_pair()
        resolver, answers = rebinding("127.0.0.1", "127.0.0.2")
        async with EgressProxy(POLICY, resolver=resolver) as proxy:
            code, reader, writer = await socks_connect(proxy.port, "rebind.test", port)
            assert code == 0
            assert await exchange(reader, writer, b"hi") == b"127.0.0.1:hi"
            writer.close()
            again, _reader, writer = await socks_connect(proxy.port, "rebind.test", port)
            writer.close()
        await allowed.close()
        await forbidden.close()
        assert answers == ["127.0.0.1", "127.0.0.2"]  # one lookup per CONNECT, none between check and connect
        assert (allowed.accepted, forbidden.accepted) == (1, 0)
        assert again == 0x02

    run(body())


def test_a_name_with_one_allowed_and_one_forbidden_address_is_refused() -> None:
    async def body() -> None:
        allowed, forbidden, port = await listener_pair()
        resolver = resolving({"mixed.test": ["127.0.0.1", "127.0.0.2"]})
        async with EgressProxy(POLICY, resolver=resolver) as proxy:
            code, _reader, writer = await socks_connect(proxy.port, "mixed.test", port)
            writer.close()
        await allowed.close()
        await forbidden.close()
        assert code == 0x02
        assert (allowed.accepted, forbidden.accepted) == (0, 0)

    run(body())


def test_reply_codes_say_why_there_is_no_tunnel() -> None:
    async def body() -> None:
        target = Listener()
        port = await target.start("127.0.0.1")
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connecting is refused
        closed_port = closed.getsockname()[1]
        calls: list[tuple[str, int]] = []
        known = resolving({}, calls)

        async def resolver(host: str, port: int) -> list[str]:
            if host == "slow.test":
                await asyncio.sleep(3600)  # a DNS server that never answers
            return await known(host, port)

        rules = HostRules("MAP *.google.com ~NOTFOUND")
        async with EgressProxy(POLICY, resolver=resolver, rules=rules, connect_timeout_s=0.3) as proxy:
            outcomes = {}
            for case, host, target_port, command in (
                ("unknown name", "nowhere.test", port, 1),
                ("name that never resolves", "slow.test", port, 1),
                ("name the rules drop", "accounts.google.com", 443, 1),
                ("closed port", "127.0.0.1", closed_port, 1),
                ("BIND", "127.0.0.1", port, 2),
            ):
                outcomes[case], reader, writer = await socks_connect(proxy.port, host, target_port, command=command)
                assert await reader.read() == b""  # the proxy closes after a failure reply
                writer.close()
            assert proxy.refusals == 0
        closed.close()
        await target.close()
        assert outcomes == {
            "unknown name": 0x04,
            "name that never resolves": 0x04,
            "name the rules drop": 0x04,
            "closed port": 0x05,
            "BIND": 0x07,
        }
        assert calls == [("nowhere.test", port)]  # the rules answered without a lookup
        assert target.accepted == 0

    run(body())


def test_garbage_or_silence_is_cut_off_after_the_handshake_timeout_leaving_no_task() -> None:
    async def body() -> None:
        fds_before = open_fds()
        async with EgressProxy(POLICY, handshake_timeout_s=0.3) as proxy:
            http_reader, http = await asyncio.open_connection("127.0.0.1", proxy.port)
            http.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            silent_reader, silent = await asyncio.open_connection("127.0.0.1", proxy.port)
            half_reader, half = await asyncio.open_connection("127.0.0.1", proxy.port)
            half.write(b"\x05\x01\x00\x05\x01")  # a greeting, then a request cut short
            assert await asyncio.wait_for(http_reader.read(), 5) == b""
            assert await asyncio.wait_for(silent_reader.read(), 5) == b""
            assert await asyncio.wait_for(half_reader.read(), 5) == b"\x05\x00"
            for writer in (http, silent, half):
                writer.close()
            for _ in range(100):
                if not proxy_tasks():
                    break
                await asyncio.sleep(0.01)
            assert proxy_tasks() == [] and proxy.tunnels_open == 0
        assert open_fds() == fds_before

    run(body())


def test_close_with_open_tunnels_returns_promptly_and_cuts_them() -> None:
    async def body() -> None:
        fds_before = open_fds()
        target = Listener()
        port = await target.start("127.0.0.1")
        proxy = EgressProxy(POLICY)
        await proxy.start()
        tunnels = [await socks_connect(proxy.port, "127.0.0.1", port) for _ in range(3)]
        for _code, reader, writer in tunnels:
            assert await exchange(reader, writer, b"x") == b"127.0.0.1:x"
        waiting_reader, waiting = await asyncio.open_connection("127.0.0.1", proxy.port)  # mid-handshake
        assert proxy.tunnels_open == 4

        await asyncio.wait_for(proxy.close(), 3)

        assert proxy_tasks() == [] and proxy.tunnels_open == 0
        for _code, reader, writer in [*tunnels, (0, waiting_reader, waiting)]:
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            await writer.wait_closed()
        await target.close()
        assert open_fds() == fds_before

    run(body())


def test_connections_past_the_cap_are_turned_away() -> None:
    async def body() -> None:
        target = Listener()
        port = await target.start("127.0.0.1")
        async with EgressProxy(POLICY, max_tunnels=2) as proxy:
            tunnels = [await socks_connect(proxy.port, "127.0.0.1", port) for _ in range(2)]
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            assert proxy.stats["turned_away"] == 1
            for _code, _reader, tunnel in tunnels:
                tunnel.close()
        await target.close()

    run(body())


def test_host_rules_read_like_chromiums() -> None:
    rules = HostRules(LOOPBACK_ONLY_RULES + ", EXCLUDE 127.0.0.2")
    assert rules.rewrite("localhost", 80) == ("localhost", 80)
    assert rules.rewrite("127.0.0.2", 80) == ("127.0.0.2", 80)
    assert rules.rewrite("example.org", 80) is None and rules.rewrite("::1", 80) is None

    mapped = HostRules("MAP *.test:8080 127.0.0.1:9, MAP *.test ~NOTFOUND, MAP a.example [::1]:7")
    assert mapped.rewrite("a.test", 8080) == ("127.0.0.1", 9)
    assert mapped.rewrite("a.test", 80) is None
    assert mapped.rewrite("A.Example", 80) == ("::1", 7)
    assert HostRules("").rewrite("example.org", 443) == ("example.org", 443)
    with pytest.raises(ValueError, match="not a host resolver rule"):
        HostRules("MAP onlyonepart")
