"""The network policy: which IP addresses (and ports of this server's own) a job may reach; pure, no I/O."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from litejobs.errors import BlockedAddress, ConfigError

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address

# Order matters: a range is named by the first row that holds it, so the metadata endpoints come
# before the private and CGNAT ranges that contain them.
_ALWAYS_REFUSED: tuple[tuple[str, str], ...] = (
    ("100.100.100.200/32", "Alibaba Cloud's metadata endpoint"),
    ("168.63.129.16/32", "Azure's WireServer endpoint"),
    ("fd00:ec2::254/128", "AWS's IPv6 metadata endpoint"),
    ("169.254.0.0/16", "link-local, where cloud metadata endpoints live"),
    ("fe80::/10", "link-local"),
    ("0.0.0.0/8", "unspecified"),
    ("::/128", "unspecified"),
    ("255.255.255.255/32", "broadcast"),
    ("224.0.0.0/4", "multicast"),
    ("ff00::/8", "multicast"),
    ("240.0.0.0/4", "reserved"),
    ("192.0.0.0/24", "reserved for IETF protocol assignments"),
    ("192.0.2.0/24", "reserved for documentation"),
    ("198.51.100.0/24", "reserved for documentation"),
    ("203.0.113.0/24", "reserved for documentation"),
    ("192.88.99.0/24", "reserved for 6to4 relays"),
    ("2001:db8::/32", "reserved for documentation"),
    ("3fff::/20", "reserved for documentation"),
    ("100::/64", "reserved for discarding"),
)

_PRIVATE: tuple[tuple[str, str], ...] = (
    ("127.0.0.0/8", "loopback"),
    ("::1/128", "loopback"),
    ("10.0.0.0/8", "private"),
    ("172.16.0.0/12", "private"),
    ("192.168.0.0/16", "private"),
    ("100.64.0.0/10", "carrier-grade NAT space"),
    # Benchmarking range, but fake-IP DNS proxies and some labs use it as an internal network.
    ("198.18.0.0/15", "benchmarking space, used as an internal network"),
    ("fc00::/7", "private unique-local"),
    ("fec0::/10", "private site-local"),
    ("64:ff9b:1::/48", "local-use NAT64"),
)

_NAT64 = IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = IPv6Network("::/96")
_IPV4_TRANSLATED = IPv6Network("::ffff:0:0/96")
_GLOBAL_UNICAST_V6 = IPv6Network("2000::/3")


def _table(rows: Iterable[tuple[str, str]]) -> tuple[tuple[Network, str], ...]:
    return tuple((ip_network(cidr), reason) for cidr, reason in rows)


_ALWAYS_REFUSED_NETS = _table(_ALWAYS_REFUSED)
_PRIVATE_NETS = _table(_PRIVATE)


def parse_ip(ip: str) -> Address | None:
    """The address in `ip` ("1.2.3.4", "::1", "[::1]", "fe80::1%eth0"), or None if it is not one."""
    text = ip.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return ip_address(text)
    except ValueError:
        return None


def _is_loopback(addr: Address) -> bool:
    inner = embedded_ipv4(addr) if isinstance(addr, IPv6Address) else None
    return addr.is_loopback or (inner is not None and inner.is_loopback)


def embedded_ipv4(addr: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv6 form carries and would deliver to (mapped, 6to4, NAT64, Teredo...)."""
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr.teredo is not None:
        return addr.teredo[1]
    low32 = IPv4Address(int(addr) & 0xFFFFFFFF)
    if addr in _NAT64 or addr in _IPV4_TRANSLATED:
        return low32
    if addr in _IPV4_COMPATIBLE and int(addr) > 1:
        return low32
    return None


class OwnPorts:
    """Loopback ports this server listens on for itself (its Chromium's DevTools): no job may reach
    them, whatever allow_private_networks says. DevTools drives every render: a job that reached it
    could read or close another key's pages. Counted, as two browsers may come and go on one port."""

    def __init__(self) -> None:
        self._ports: Counter[int] = Counter()

    def add(self, port: int) -> None:
        self._ports[port] += 1

    def discard(self, port: int) -> None:
        self._ports[port] -= 1
        if self._ports[port] <= 0:
            del self._ports[port]

    def __contains__(self, port: object) -> bool:
        return port in self._ports


class NetworkPolicy:
    """Refuses addresses a scraping job must never reach, and private ones unless `allow_private`."""

    def __init__(self, allow_private: bool, blocked: Iterable[str] = ()) -> None:
        self.allow_private = allow_private
        self.own_ports = OwnPorts()
        try:
            self._blocked = tuple(ip_network(cidr.strip(), strict=False) for cidr in blocked)
        except ValueError as exc:
            raise ConfigError(f"network policy: not an address range: {exc}") from None

    def refusal(self, ip: str, port: int | None = None) -> str | None:
        """Why the policy refuses `ip` (at `port`, where known) ("is loopback (127.0.0.0/8)..."), or
        None when a job may reach it."""
        addr = parse_ip(ip)
        if addr is None:
            return "is not an IP address"
        if port is not None and port in self.own_ports and _is_loopback(addr):
            return f"is, at port {port}, this server's own browser control endpoint, which no job may reach"
        return self._refusal(addr)

    def check_ip(self, ip: str, port: int | None = None) -> None:
        """Raise BlockedAddress naming `ip` and the reason, unless a job may connect to it (at `port`)."""
        reason = self.refusal(ip, port)
        if reason is not None:
            raise BlockedAddress(f"the network policy refuses {ip}, which {reason}")

    def _refusal(self, addr: Address) -> str | None:
        for net, reason in _ALWAYS_REFUSED_NETS:
            if addr in net:
                return f"is {reason} ({net})"
        for net in self._blocked:
            if addr in net:
                return f"is in the blocked range {net}"
        if isinstance(addr, IPv6Address):
            inner = embedded_ipv4(addr)
            if inner is not None:
                reason = self._refusal(inner)
                return None if reason is None else f"embeds {inner}, which {reason}"
        for net, reason in _PRIVATE_NETS:
            if addr in net:
                if self.allow_private:
                    return None
                return f"is {reason} ({net}); set fetch.allow_private_networks = true to allow it"
        if isinstance(addr, IPv6Address) and addr not in _GLOBAL_UNICAST_V6:
            return "is reserved (outside the IPv6 global unicast range 2000::/3)"
        return None
