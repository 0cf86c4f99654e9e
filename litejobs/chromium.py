"""The Chromium process: found, spawned in its own process group with a throwaway profile, measured, killed;
the profiles dead servers left behind, swept."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import re
import shutil
import signal
import socket
import tempfile
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyppeteer.launcher import DEFAULT_ARGS

from litejobs.errors import BrowserError

log = logging.getLogger("litejobs.browser")

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
#: Debian's /usr/bin/chromium is a sh wrapper that adds flags of its own; this is the binary it execs
_DEBIAN_BINARY = "/usr/lib/chromium/chromium"
_PR_SET_PDEATHSIG = 1
_DEVTOOLS_LINE = re.compile(rb"DevTools listening on (ws://\S+)")
#: one switch with pyppeteer's own site-per-process: whether Chromium merges a repeated one is unverified
_DISABLED_FEATURES = (
    "site-per-process,Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,"
    "CalculateNativeWinOcclusion,InterestFeedContentSuggestions,CertificateTransparencyComponentUpdater,"
    "AutofillServerCommunication,PrivacySandboxSettings4"
)
_QUIET_ARGS = (
    "--headless",
    "--hide-scrollbars",
    "--mute-audio",
    "--disable-gpu",
    "--disable-quic",
    "--disable-component-update",
    "--disable-domain-reliability",
    "--no-default-browser-check",
    "--no-pings",
    "--disable-field-trial-config",
    f"--disable-features={_DISABLED_FEATURES}",
)
#: WebRTC may send UDP only through a proxy that carries UDP, and Chromium has none (the egress proxy refuses
#: UDP ASSOCIATE too), so a page's RTCPeerConnection sends no STUN, no TURN over UDP, no ICE checks and no mDNS
#: announcements; TURN over TCP goes through the egress proxy and its policy like any connection. Chrome maps
#: this switch to the webrtc.ip_handling_policy pref of every profile, incognito ones, popups and frames
#: included. `--force-webrtc-ip-handling-policy`, its content_shell namesake, does nothing here, and neither do
#: `--enforce-webrtc-ip-permission-check` or `--webrtc-udp-port-range=1-1` (measured with Chromium 156: 4
#: datagrams to a blocked STUN address with each, 0 with this). The API stays, so pages that test for it still
#: render; only its UDP is gone. tests/test_browser_webrtc.py tries the bypasses (iframes, popups, workers).
WEBRTC_PROXIED_ONLY = "--webrtc-ip-handling-policy=disable_non_proxied_udp"
#: Chromium's own lookups once it has the proxy: every name answers 0.0.0.0 at once, the proxy's 127.0.0.1 and
#: names the pool's rules EXCLUDE excepted (an EXCLUDE beats every MAP; the first MAP that matches wins). A
#: remote ICE candidate named `<anything>.local` is otherwise looked up by multicast DNS, flag or no flag: a
#: datagram to 224.0.0.251 carrying a name the page chose. A MAP to ~NOTFOUND still sends one (asking for
#: "~NOTFOUND"), a MAP to an IP literal none; patterns are lowercased and names are not, so "*.local" misses
#: "X.LOCAL" and only "*" catches every case. Page and service hosts go to the proxy by name, untouched: strace
#: of the WebRTC test pages sees TCP connections to the proxy alone and no datagram (0.0.0.0 only costs the
#: address sorter a UDP connect(), which sends nothing).
_RESOLVE_NOTHING = "MAP * 0.0.0.0, EXCLUDE 127.0.0.1"
#: the profile folders litejobs makes in the temporary folder; nothing else there is ever swept
PROFILE_PREFIX = "litejobs-chromium-"
#: in each profile: the process that made it (pid, start time, boot id, PID namespace), read by the sweep
PROFILE_OWNER_FILE = "litejobs-owner.json"
_BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"


def find_chromium(configured: str = "") -> str | None:
    """The configured executable if it exists, else the first Chromium on PATH; None if there is none."""
    if configured:
        return configured if os.path.isfile(configured) and os.access(configured, os.X_OK) else None
    for name in _CANDIDATES:
        path = shutil.which(name)
        if path:
            return _DEBIAN_BINARY if _is_script(path) and os.access(_DEBIAN_BINARY, os.X_OK) else path
    return None


def _is_script(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(2) == b"#!"
    except OSError:
        return False


# -- pitfalls 5-9: pyppeteer's launch() blocks the loop, installs signal handlers and atexit hooks, -------
# -- and leaves Chromium running when the server is SIGKILLed. So Chromium is started here and connect()ed.


def chromium_args(host_resolver_rules: str, *, as_root: bool, proxy_port: int | None = None) -> list[str]:
    """Chromium's flags: pyppeteer's defaults, headless, no background traffic, no WebRTC UDP, DNS limited by
    the rules; with `proxy_port`, every connection goes through the SOCKS5 proxy on 127.0.0.1 (egress_proxy)."""
    args = [arg for arg in DEFAULT_ARGS if not arg.startswith("--disable-features=")]
    rules, proxy = host_resolver_rules, []
    if proxy_port is not None:
        # With a SOCKS5 proxy Chromium resolves no destination itself: it sends the proxy the name, so the
        # rules no longer reach page or service hosts (the proxy applies them), and the one address Chromium
        # still connects to is the proxy's. A rule like "MAP * ~NOTFOUND" matches IP literals too and would
        # cut Chromium off from the proxy, so 127.0.0.1 is excluded. `<-loopback>` removes the implicit
        # bypass for localhost and 127.0.0.0/8, so loopback targets pass the policy too. When the proxy
        # cannot be reached Chromium fails the request (ERR_PROXY_CONNECTION_FAILED); it never falls back to
        # a direct connection.
        rules = f"{_RESOLVE_NOTHING}, {rules}" if rules else _RESOLVE_NOTHING
        proxy = [f"--proxy-server=socks5://127.0.0.1:{proxy_port}", "--proxy-bypass-list=<-loopback>"]
    args += [*_QUIET_ARGS, WEBRTC_PROXIED_ONLY, f"--host-resolver-rules={rules}", *proxy]
    if as_root:
        args.append("--no-sandbox")  # Chromium refuses to start as root with its sandbox on
    return args


@dataclass(eq=False)
class ChromiumProcess:
    """A Chromium we started in its own process group, and its throwaway profile directory."""

    proc: asyncio.subprocess.Process
    user_data_dir: str
    ws_endpoint: str = ""
    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    drain: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    async def stop(self, grace_s: float) -> None:
        """Wait up to grace_s for Chromium to exit, then kill whatever is left of its group; remove the profile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.proc.wait(), grace_s)
        self.kill_group()
        await self.proc.wait()
        for _ in range(100):  # killed children still hold the profile for a few ms
            if not group_pids(self.pid, alive_only=True):
                break
            await asyncio.sleep(0.02)
        if self.drain is not None:
            self.drain.cancel()
        shutil.rmtree(self.user_data_dir, ignore_errors=True)

    def memory_mb(self) -> tuple[float, float]:
        """(RSS, PSS) of the whole Chromium tree in MiB; RSS counts shared pages once per process."""
        return tree_memory_mb(group_pids(self.pid, alive_only=True))


async def spawn_chromium(executable: str, args: list[str], *, timeout_s: float) -> ChromiumProcess:
    """Start Chromium and read its DevTools address from stderr, without blocking the event loop. The
    profiles of servers that died without removing theirs (SIGKILL, OOM) are removed first."""
    await asyncio.to_thread(sweep_stale_profiles)
    profile = await asyncio.to_thread(_make_profile)
    argv = [executable, *args, f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"]
    # Chromium's crashpad handler keeps its database under ~/.config unless told otherwise, and Chromium makes
    # an org.chromium.Chromium.* folder in TMPDIR that only a clean exit removes: all go with the profile
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": f"{profile}/.config",
        "XDG_CACHE_HOME": f"{profile}/.cache",
        "TMPDIR": f"{profile}/tmp",
    }
    try:
        process = ChromiumProcess(await _start(argv, env), profile)
    except BaseException:
        shutil.rmtree(profile, ignore_errors=True)
        raise
    try:
        process.ws_endpoint = await asyncio.wait_for(_read_endpoint(process), timeout_s)
    except BaseException as exc:
        await process.stop(grace_s=0)
        if isinstance(exc, TimeoutError):
            raise BrowserError(f"Chromium did not start within launch_timeout_s={timeout_s:g}") from None
        raise
    process.drain = asyncio.ensure_future(_drain(process))
    return process


async def _start(argv: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
    # The parent-death signal makes the kernel kill Chromium if this process dies, even by SIGKILL. It is
    # tied to the thread that forks, which is the event loop's. setpriv avoids running Python in the forked
    # child (preexec_fn is unsafe once threads exist, and getaddrinfo runs in executor threads).
    setpriv = shutil.which("setpriv")
    preexec: Callable[[], Any] | None = None
    if setpriv:
        argv = [setpriv, "--pdeathsig", "KILL", *argv]
    else:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
        preexec = lambda: prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # noqa: E731
    return await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
        preexec_fn=preexec,
        env=env,
    )


async def _read_endpoint(process: ChromiumProcess) -> str:
    assert process.proc.stderr is not None
    while True:
        line = await process.proc.stderr.readline()
        if not line:
            tail = " | ".join(process.stderr_tail) or "no output"
            raise BrowserError(f"Chromium exited before it was ready: {tail}")
        match = _DEVTOOLS_LINE.search(line)
        if match:
            return match.group(1).decode()
        process.stderr_tail.append(line.decode(errors="replace").strip())


async def _drain(process: ChromiumProcess) -> None:
    # Chromium keeps logging to stderr; an unread pipe would fill up and stall it.
    assert process.proc.stderr is not None
    while line := await process.proc.stderr.readline():
        process.stderr_tail.append(line.decode(errors="replace").strip())


# -- pitfall 10: a SIGKILLed server leaves its profile (about 2 MB); the next launch on the machine sweeps it --


def _make_profile() -> str:
    """A new profile folder, named as litejobs' and holding its owner's identity before Chromium starts."""
    profile = tempfile.mkdtemp(prefix=PROFILE_PREFIX)
    owner = this_process()
    try:
        os.mkdir(f"{profile}/tmp")
        if owner is not None:
            written = Path(profile, f"{PROFILE_OWNER_FILE}.tmp")
            written.write_text(json.dumps(owner))
            written.rename(Path(profile, PROFILE_OWNER_FILE))  # whole or absent: a sweep never reads half of it
    except BaseException:
        shutil.rmtree(profile, ignore_errors=True)
        raise
    return profile


def this_process() -> dict[str, Any] | None:
    """What names this process across PID reuse, reboots, containers and machines sharing a folder: host,
    pid, start time (clock ticks since boot), boot id and PID namespace (its inode); None where /proc cannot
    tell."""
    pid = os.getpid()
    try:
        boot_id = Path(_BOOT_ID_FILE).read_text().strip()
        pid_namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
    started = _started(pid)
    if started is None or not boot_id:
        return None
    return {
        "host": socket.gethostname(),
        "pid": pid,
        "started": started,
        "boot_id": boot_id,
        "pid_namespace": pid_namespace,
    }


def _started(pid: int) -> int | None:
    """When process `pid` started, in clock ticks since boot; None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def sweep_stale_profiles(folder: str | None = None) -> list[str]:
    """Remove the profile folders (PROFILE_PREFIX) in `folder` (the temporary folder) whose owner is provably
    gone: made on this host before the last boot, or in this PID namespace by a process that no longer runs
    (its pid free, or taken by a process started at another time). A folder without an owner file (an older
    version's, or one being made), another host's and another PID namespace's (another container sharing
    /tmp) are left alone, and so is every live server's. Returns the folders removed."""
    me = this_process()
    if me is None:
        return []
    removed = []
    for entry in Path(folder or tempfile.gettempdir()).glob(f"{PROFILE_PREFIX}*"):
        if entry.is_dir() and not entry.is_symlink() and _owner_gone(entry / PROFILE_OWNER_FILE, me):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(str(entry))
    if removed:
        log.info("removed %d Chromium profile folders left by dead servers: %s", len(removed), ", ".join(removed))
    return removed


def _owner_gone(owner_file: Path, me: dict[str, Any]) -> bool:
    try:
        owner = json.loads(owner_file.read_text())
        host, pid, started, boot_id, namespace = (
            owner[k] for k in ("host", "pid", "started", "boot_id", "pid_namespace")
        )
    except (OSError, ValueError, TypeError, KeyError):
        return False
    if host != me["host"]:
        return False  # another machine's, on a shared folder
    if boot_id != me["boot_id"]:
        return True  # every process of an earlier boot is gone
    if namespace != me["pid_namespace"] or not isinstance(pid, int) or pid <= 0:
        return False  # its pid names nothing this process can check
    return _started(pid) != started  # None: no such process; another start time: the pid was reused


# -- the Chromium tree, read from /proc ------------------------------------------------------------------


def group_pids(pgid: int, *, alive_only: bool = False) -> list[int]:
    """Processes in the group `pgid` (zombies too unless alive_only), from /proc."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        state, _ppid, group = stat[stat.rindex(")") + 2 :].split(maxsplit=3)[:3]
        if int(group) == pgid and not (alive_only and state in "ZX"):
            pids.append(int(entry.name))
    return pids


def tree_memory_mb(pids: Iterable[int]) -> tuple[float, float]:
    """Summed (RSS, PSS) in MiB of `pids`; processes that vanished meanwhile count as 0."""
    rss_kb = pss_kb = 0
    for pid in pids:
        rss_kb += _status_kb(f"/proc/{pid}/status", "VmRSS:")
        pss_kb += _status_kb(f"/proc/{pid}/smaps_rollup", "Pss:")
    return rss_kb / 1024, pss_kb / 1024


def _status_kb(path: str, key: str) -> int:
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0
