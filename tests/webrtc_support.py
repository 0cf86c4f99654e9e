"""Pages that probe WebRTC and WebTransport from every corner of a document; UDP listeners that count datagrams."""

from __future__ import annotations

import asyncio
import re
from typing import Any

#: `probe(win, iceServers, remoteCandidate)` makes an RTCPeerConnection in `win` that gathers candidates (STUN,
#: TURN) and, given a remote candidate, runs ICE checks against it; it answers "function" (the API exists) and
#: the candidates it gathered, "end" closing the list, or the type of a missing RTCPeerConnection
PROBE = r"""
async function probe(win, iceServers, remoteCandidate) {
  const kind = typeof win.RTCPeerConnection;
  if (kind !== 'function') return kind;
  const seen = [];
  try {
    const pc = new win.RTCPeerConnection({iceServers});
    pc.onicecandidate = (e) => seen.push(e.candidate ? e.candidate.type + '/' + e.candidate.protocol : 'end');
    pc.createDataChannel('probe');
    await pc.setLocalDescription(await pc.createOffer());
    if (remoteCandidate) {
      const peer = new win.RTCPeerConnection();
      await peer.setRemoteDescription(pc.localDescription);
      await peer.setLocalDescription(await peer.createAnswer());
      await pc.setRemoteDescription(peer.localDescription);
      await pc.addIceCandidate({candidate: remoteCandidate, sdpMid: '0'});
    }
  } catch (e) { seen.push('error ' + e); }
  await new Promise((wake) => setTimeout(wake, 2000));
  return [kind, ...seen].join(' ');
}
"""

WEBRTC_PAGE = """<!doctype html><html><body><p id="state">waiting</p><script>%(probe)s
const STUN = [{urls: 'stun:127.0.0.2:%(udp)d'}];
function done(state) {
  document.getElementById('state').textContent = state;
  const mark = document.createElement('i'); mark.id = 'done'; document.body.appendChild(mark);
}
Promise.resolve().then(() => %(variant)s).then(done, (e) => done('error ' + e));
</script></body></html>"""

#: a page of its own (in an iframe of another origin, or a popup) that probes and posts its answer back
WEBRTC_CHILD = """<!doctype html><html><body><script>%(probe)s
probe(window, [{urls: 'stun:127.0.0.2:%(udp)d'}]).then((s) => (window.opener || window.parent).postMessage(s, '*'));
</script></body></html>"""

#: variants whose answer comes back by postMessage
_POSTED = "new Promise((answer) => { window.onmessage = (e) => answer(e.data); %s })"
_WORKER = "new Promise((answer) => { const w = new Worker(%s); w.onmessage = (e) => answer(e.data); })"
_IFRAME = "const f = document.createElement('iframe');"

#: every way tried for a page to reach an RTCPeerConnection, or to make one send UDP: a JS expression each
WEBRTC_VARIANTS = {
    "STUN from the top document": "probe(window, STUN)",
    "TURN over UDP": "probe(window, [{urls: 'turn:127.0.0.2:%(udp)d?transport=udp', username: 'u', credential: 'p'}])",
    "ICE checks to a remote candidate": "probe(window, [], 'candidate:1 1 udp 2122260223 127.0.0.2 %(udp)d typ host')",
    "iframe appended and used at once": f"(() => {{ {_IFRAME} document.body.appendChild(f); "
    "return probe(f.contentWindow, STUN); })()",
    "about:blank iframe": f"new Promise((answer) => {{ {_IFRAME} f.src = 'about:blank'; "
    "f.onload = () => answer(probe(f.contentWindow, STUN)); document.body.appendChild(f); })",
    "srcdoc iframe with its own script": _POSTED
    % f"{_IFRAME} f.srcdoc = '<script>' + probe + '; probe(window, ' + JSON.stringify(STUN) + ')"
    ".then((s) => parent.postMessage(s, `*`))</' + 'script>'; document.body.appendChild(f);",
    "iframe of another origin": _POSTED % f"{_IFRAME} f.src = '%(other_origin_child)s'; document.body.appendChild(f);",
    "window.open of about:blank": "probe(window.open('about:blank'), STUN)",
    "window.open of a page": _POSTED % "window.open('%(child)s');",
    "blob: URL worker": _WORKER % "URL.createObjectURL(new Blob(['postMessage(typeof RTCPeerConnection)']))",
    "data: URL worker": _WORKER % "'data:text/javascript,postMessage(typeof RTCPeerConnection)'",
}
#: what a page answers under the pool's flags: the API is there, and gathering ends with no candidate at all
NO_CANDIDATES = "function end"

#: WebTransport is HTTP/3, so QUIC over UDP; its target here is an allowed address, 127.0.0.1
WEBTRANSPORT_PAGE = """<!doctype html><html><body><p id="state">waiting</p><script>
async function attempt() {
  const session = new WebTransport('https://127.0.0.1:%(udp)d/');
  const late = new Promise((wake) => setTimeout(() => wake('no answer within 2 s'), 2000));
  try { return 'ready? ' + await Promise.race([session.ready, late]); } catch (e) { return 'failed: ' + e.name; }
}
attempt().then((state) => {
  document.getElementById('state').textContent = state;
  const mark = document.createElement('i'); mark.id = 'done'; document.body.appendChild(mark);
});
</script></body></html>"""


class Datagrams(asyncio.DatagramProtocol):
    """Counts the UDP datagrams that reach its socket."""

    def __init__(self) -> None:
        self.received = 0

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received += 1


async def udp_listener(host: str) -> tuple[asyncio.DatagramTransport, Datagrams]:
    """A UDP socket on host (any port) and the count of what it receives."""
    loop = asyncio.get_running_loop()
    return await loop.create_datagram_endpoint(Datagrams, local_addr=(host, 0))


def webrtc_pages(script: str, udp_port: int, base_url: str, path: str) -> dict[str, str]:
    """The page running `script` (as in WEBRTC_VARIANTS) at `path`, and the child page it may open: {path: html}."""
    child = f"{path}-child"
    params = {
        "udp": udp_port,
        "child": base_url + child,
        "other_origin_child": base_url.replace("127.0.0.1", "localhost") + child,
    }
    return {
        path: WEBRTC_PAGE % {"probe": PROBE, "udp": udp_port, "variant": script % params},
        child: WEBRTC_CHILD % {"probe": PROBE, "udp": udp_port},
    }


def page_state(html_text: str) -> str:
    match = re.search(r'<p id="state">(.*?)</p>', html_text, re.S)
    return match.group(1) if match else f"no state in {html_text[:200]!r}"
