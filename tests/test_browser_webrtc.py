"""No UDP from a rendered page: WebRTC in every corner of a page, WebTransport, TURN over TCP, mDNS.

Nothing a page sends over UDP passes the egress proxy, so Chromium must send none. The controls that show these
tests can fail are in test_browser_udp_controls.py.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from litejobs.browser import SERVICE_HOST_RULES, BrowserPool, RenderRequest, find_chromium
from litejobs.chromium import WEBRTC_PROXIED_ONLY, chromium_args
from litejobs.config import BrowserConfig
from tests.egress_support import POLICY, Routes, html, listener_pair, needs_chromium, pool_with, resolving, run, serve
from tests.support import LoopThread, ServerThread, TargetSite, make_config
from tests.webrtc_support import (
    NO_CANDIDATES,
    PROBE,
    WEBRTC_PAGE,
    WEBRTC_VARIANTS,
    WEBTRANSPORT_PAGE,
    page_state,
    udp_listener,
    webrtc_pages,
)


class UdpListener:
    """`udp_listener` on a loop of its own, for tests that drive the server synchronously."""

    def __init__(self, host: str) -> None:
        self._thread = LoopThread(f"udp-{host}")
        self._transport, self._counter = self._thread.call(udp_listener(host))
        self.port = int(self._transport.get_extra_info("sockname")[1])

    @property
    def received(self) -> int:
        return self._counter.received

    def close(self) -> None:
        self._thread.call(closed(self._transport))
        self._thread.close()


async def closed(transport: asyncio.BaseTransport) -> None:
    """Close transport and let the loop run the callback that closes its socket."""
    transport.close()
    await asyncio.sleep(0)


@pytest.fixture(scope="module")
def webrtc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """One server (so one Chromium) for every WebRTC case; 127.0.0.2 is blocked."""
    config = make_config(tmp_path_factory.mktemp("webrtc"), fetch={"blocked_networks": ["127.0.0.2/32"]})
    with ServerThread(config) as server:
        yield server


@pytest.fixture(scope="module")
def webrtc_site() -> Iterator[TargetSite]:
    target = TargetSite()
    yield target
    target.close()


@pytest.fixture
def blocked_udp() -> Iterator[UdpListener]:
    """A UDP listener on the blocked 127.0.0.2."""
    listener = UdpListener("127.0.0.2")
    yield listener
    listener.close()


def render_job(server: ServerThread, url: str) -> tuple[dict[str, Any], str]:
    """A render job of url that waits for #done: (the finished job, the page's #state)."""
    job = server.http.submit({"url": url, "wait_for": "#done", "output": ["html"]}, kind="render")
    done = server.http.wait(job["job_id"], 60)
    outputs = server.http.get(f"/v1/jobs/{job['job_id']}/result").json.get("outputs", {})
    return done, page_state(outputs.get("html", ""))


def test_chromium_is_started_with_webrtc_udp_allowed_only_through_a_proxy() -> None:
    for proxy_port in (None, 4321):
        assert WEBRTC_PROXIED_ONLY in chromium_args("", as_root=False, proxy_port=proxy_port)
    assert WEBRTC_PROXIED_ONLY == "--webrtc-ip-handling-policy=disable_non_proxied_udp"


@pytest.mark.browser
@needs_chromium
@pytest.mark.parametrize("variant", list(WEBRTC_VARIANTS))
def test_a_page_sends_no_webrtc_udp_to_a_blocked_address_and_its_render_job_completes(
    variant: str, webrtc_server: ServerThread, webrtc_site: TargetSite, blocked_udp: UdpListener
) -> None:
    path = f"/webrtc/{list(WEBRTC_VARIANTS).index(variant)}"
    for route, page in webrtc_pages(WEBRTC_VARIANTS[variant], blocked_udp.port, webrtc_site.base_url, path).items():
        webrtc_site.add_html(route, page)

    done, state = render_job(webrtc_server, webrtc_site.url(path))

    assert blocked_udp.received == 0
    assert done["status"] == "completed"
    assert state == ("undefined" if "worker" in variant else NO_CANDIDATES)  # the API is there, but not in workers


@pytest.mark.browser
@needs_chromium
def test_webtransport_sends_no_udp_through_the_egress_proxy_and_the_render_job_completes(
    webrtc_server: ServerThread, webrtc_site: TargetSite
) -> None:
    """Chromium carries no QUIC over a SOCKS5 proxy, so WebTransport sends nothing, even to an allowed address."""
    allowed = UdpListener("127.0.0.1")
    url = webrtc_site.add_html("/webtransport", WEBTRANSPORT_PAGE % {"udp": allowed.port})

    done, state = render_job(webrtc_server, url)
    allowed.close()

    assert done["status"] == "completed"
    assert state.startswith("failed: ")
    assert allowed.received == 0


TURN_TCP_PAGE = WEBRTC_PAGE.replace(
    "Promise.resolve()",
    "const TURN = (host) => ({urls: `turn:${host}:%(tcp)d?transport=tcp`, username: 'u', credential: 'p'});\n"
    "Promise.resolve()",
)


@pytest.mark.browser
@needs_chromium
def test_webrtc_keeps_tcp_only_through_the_egress_proxy_and_its_policy() -> None:
    """TURN over TCP is what WebRTC has left: Chromium hands the proxy the TURN server's name (only the proxy's
    resolver knows these names), and the proxy refuses the blocked one and connects the allowed one."""

    async def body() -> None:
        allowed, forbidden, tcp_port = await listener_pair()
        calls: list[tuple[str, int]] = []
        resolver = resolving({"turn-ok.test": ["127.0.0.1"], "turn-evil.test": ["127.0.0.2"]}, calls)
        variant = "probe(window, [TURN('turn-evil.test'), TURN('turn-ok.test')])"
        page = TURN_TCP_PAGE % {"probe": PROBE, "udp": 9, "tcp": tcp_port, "variant": variant}
        site, port, _hits = await serve("127.0.0.1", 0, {"/": html(page)})
        async with pool_with(POLICY, resolver) as pool:
            result = await pool.render(RenderRequest(f"http://127.0.0.1:{port}/", wait_for="#done"))
            refusals = pool.state()["egress_refusals"]
        await site.cleanup()
        await allowed.close()
        await forbidden.close()
        assert page_state(result.html).startswith("function")
        assert {("turn-ok.test", tcp_port), ("turn-evil.test", tcp_port)} <= set(calls)
        assert allowed.accepted >= 1 and forbidden.accepted == 0 and refusals >= 1

    run(body())


#: remote ICE candidates named in ways Chromium resolves by multicast DNS: lower case, upper case with the
#: root's dot, a subdomain
MDNS_CANDIDATES = ("secret-lower.local", "SECRET-UPPER.LOCAL.", "a.b.secret-sub.local")
STRACE = shutil.which("strace")


def traced_chromium(tmp_path: Path) -> tuple[str, Path]:
    """A Chromium executable that runs the real one under strace, logging every socket call that can carry a
    datagram or open a connection, with the kind of socket (-yy); (the executable, the log)."""
    log = tmp_path / "strace.log"
    script = tmp_path / "chromium"
    calls = "connect,sendto,sendmsg,sendmmsg"
    script.write_text(f'#!/bin/sh\nexec {STRACE} -f -qq -yy -e trace={calls} -s 100 -o {log} {find_chromium()} "$@"\n')
    script.chmod(0o755)
    return str(script), log


def not_to_the_proxy(call: str) -> bool:
    """Whether a logged socket call names an IP address other than the proxy's 127.0.0.1. Sends on TCP and on
    connected sockets name none; Chromium's WebRTC and mDNS sockets name their peer in each sendto."""
    return any(address != "127.0.0.1" for address in re.findall(r'inet_(?:addr|pton)\((?:AF_INET6, )?"([^"]+)"', call))


@pytest.mark.browser
@needs_chromium
@pytest.mark.skipif(STRACE is None, reason="no strace on this machine")
def test_no_chromium_process_sends_a_datagram_not_even_mdns_for_a_local_candidate(tmp_path: Path) -> None:
    """A `.local` ICE candidate would be looked up by multicast DNS, which no listener on loopback can see; so
    strace watches every Chromium process, run by the pool with the production rules (SERVICE_HOST_RULES)."""

    async def body() -> None:
        executable, log = traced_chromium(tmp_path)
        transport, counter = await udp_listener("127.0.0.2")
        udp_port = transport.get_extra_info("sockname")[1]
        scripts = [WEBRTC_VARIANTS["STUN from the top document"]]
        scripts += [
            f"probe(window, [], 'candidate:1 1 udp 2122260223 {name} %(udp)d typ host')" for name in MDNS_CANDIDATES
        ]
        routes: Routes = {}
        site, port, _hits = await serve("127.0.0.1", 0, routes)
        base = f"http://127.0.0.1:{port}"
        for index, script in enumerate(scripts):
            routes.update(
                {path: html(page) for path, page in webrtc_pages(script, udp_port, base, f"/{index}").items()}
            )
        config = BrowserConfig(executable=executable)
        async with BrowserPool(config, POLICY, host_resolver_rules=SERVICE_HOST_RULES, resolver=resolving({})) as pool:
            states = [
                page_state((await pool.render(RenderRequest(f"{base}/{index}", wait_for="#done"))).html)
                for index in range(len(scripts))
            ]
        await site.cleanup()
        transport.close()
        calls = log.read_text().splitlines()
        sends_away = [call for call in calls if re.match(r"\d+ send(to|msg|mmsg)\(", call) and not_to_the_proxy(call)]
        proxy_connects = [call for call in calls if " connect(" in call and 'inet_addr("127.0.0.1")' in call]
        assert states == [NO_CANDIDATES] * len(scripts) and counter.received == 0
        assert proxy_connects  # strace did watch the process that makes Chromium's connections
        assert sends_away == []
        assert [call for call in calls if "secret" in call.lower() and re.search(r"sin6?_port|<UDP|<TCP", call)] == []

    run(body())
