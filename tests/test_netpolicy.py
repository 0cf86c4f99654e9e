"""NetworkPolicy: which addresses a job may reach, judged without connecting anywhere."""

from __future__ import annotations

import pytest

from litejobs.errors import BlockedAddress, ConfigError
from litejobs.netpolicy import NetworkPolicy

ALLOWED, REFUSED = True, False

# address, allowed when allow_private=False, allowed when allow_private=True
TABLE = [
    # public
    ("93.184.215.14", ALLOWED, ALLOWED),
    ("8.8.8.8", ALLOWED, ALLOWED),
    ("172.32.0.1", ALLOWED, ALLOWED),
    ("100.128.0.1", ALLOWED, ALLOWED),
    ("2606:4700:4700::1111", ALLOWED, ALLOWED),
    # loopback, private, carrier-grade NAT: only with allow_private
    ("127.0.0.1", REFUSED, ALLOWED),
    ("127.255.255.254", REFUSED, ALLOWED),
    ("::1", REFUSED, ALLOWED),
    ("[::1]", REFUSED, ALLOWED),
    ("10.0.0.1", REFUSED, ALLOWED),
    ("172.16.0.1", REFUSED, ALLOWED),
    ("172.31.255.255", REFUSED, ALLOWED),
    ("192.168.1.1", REFUSED, ALLOWED),
    ("100.64.0.1", REFUSED, ALLOWED),
    ("100.127.255.255", REFUSED, ALLOWED),
    ("fc00::1", REFUSED, ALLOWED),
    ("fd12:3456::1", REFUSED, ALLOWED),
    # link-local and cloud metadata: never
    ("169.254.169.254", REFUSED, REFUSED),
    ("169.254.0.1", REFUSED, REFUSED),
    ("fe80::1", REFUSED, REFUSED),
    ("fe80::1%eth0", REFUSED, REFUSED),
    ("fd00:ec2::254", REFUSED, REFUSED),
    ("100.100.100.200", REFUSED, REFUSED),
    ("168.63.129.16", REFUSED, REFUSED),
    # unspecified, multicast, broadcast, reserved: never
    ("0.0.0.0", REFUSED, REFUSED),
    ("0.1.2.3", REFUSED, REFUSED),
    ("::", REFUSED, REFUSED),
    ("224.0.0.1", REFUSED, REFUSED),
    ("239.255.255.250", REFUSED, REFUSED),
    ("ff02::1", REFUSED, REFUSED),
    ("255.255.255.255", REFUSED, REFUSED),
    ("240.0.0.1", REFUSED, REFUSED),
    ("192.0.2.1", REFUSED, REFUSED),
    ("2001:db8::1", REFUSED, REFUSED),
    ("4000::1", REFUSED, REFUSED),
    # IPv6 forms that carry an IPv4 address are judged by it
    ("::ffff:169.254.169.254", REFUSED, REFUSED),
    ("::ffff:a9fe:a9fe", REFUSED, REFUSED),
    ("::ffff:127.0.0.1", REFUSED, ALLOWED),
    ("::ffff:10.1.2.3", REFUSED, ALLOWED),
    ("::ffff:8.8.8.8", ALLOWED, ALLOWED),
    ("2002:a9fe:a9fe::1", REFUSED, REFUSED),  # 6to4 of 169.254.169.254
    ("2002:7f00:1::1", REFUSED, ALLOWED),  # 6to4 of 127.0.0.1
    ("2002:808:808::1", ALLOWED, ALLOWED),  # 6to4 of 8.8.8.8
    ("64:ff9b::169.254.169.254", REFUSED, REFUSED),  # NAT64
    ("64:ff9b::10.0.0.1", REFUSED, ALLOWED),
    ("64:ff9b::8.8.8.8", ALLOWED, ALLOWED),
    ("::169.254.169.254", REFUSED, REFUSED),  # IPv4-compatible (deprecated)
    # not an address at all: refused, never guessed at
    ("example.com", REFUSED, REFUSED),
    ("127.1", REFUSED, REFUSED),
    ("2130706433", REFUSED, REFUSED),
    ("", REFUSED, REFUSED),
]


@pytest.mark.parametrize(("address", "public_only", "with_private"), TABLE)
def test_policy_table(address: str, public_only: bool, with_private: bool) -> None:
    assert (NetworkPolicy(allow_private=False).refusal(address) is None) is public_only
    assert (NetworkPolicy(allow_private=True).refusal(address) is None) is with_private


def test_check_ip_names_the_address_and_the_reason() -> None:
    with pytest.raises(BlockedAddress) as caught:
        NetworkPolicy(allow_private=True).check_ip("169.254.169.254")

    assert "169.254.169.254" in str(caught.value)
    assert "link-local" in str(caught.value)
    assert caught.value.retryable is False


def test_refused_private_address_says_how_to_allow_it() -> None:
    with pytest.raises(BlockedAddress, match="allow_private_networks"):
        NetworkPolicy(allow_private=False).check_ip("10.0.0.1")


def test_embedded_address_is_named() -> None:
    with pytest.raises(BlockedAddress, match=r"embeds 169\.254\.169\.254"):
        NetworkPolicy(allow_private=True).check_ip("::ffff:169.254.169.254")


def test_allowed_address_passes() -> None:
    NetworkPolicy(allow_private=False).check_ip("8.8.8.8")
    NetworkPolicy(allow_private=True).check_ip("127.0.0.1")


def test_blocked_ranges_are_refused_even_with_private_allowed() -> None:
    policy = NetworkPolicy(allow_private=True, blocked=["127.0.0.2/32", "203.0.114.0/24", "2001:4860::/32"])

    assert policy.refusal("127.0.0.1") is None
    assert policy.refusal("127.0.0.2") == "is in the blocked range 127.0.0.2/32"
    assert policy.refusal("::ffff:127.0.0.2") is not None
    assert policy.refusal("203.0.114.9") is not None
    assert policy.refusal("2001:4860::8888") is not None
    assert policy.refusal("2001:4861::1") is None


def test_bad_blocked_range_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not an address range"):
        NetworkPolicy(allow_private=False, blocked=["10.0.0.0/33"])
