# Pure tests of migproxy.policy.scope: which requests the injection policies apply to, by Host
# (case, port, trailing dot), path prefix (origin-form and absolute-form targets) and client
# network (IPv4, IPv6, IPv4-mapped, unparsable addresses).
from __future__ import annotations

import dataclasses
import ipaddress

import pytest

from migproxy.policy.scope import Scope, host_key, parse_client_ip, split_absolute_form


def nets(*cidrs: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


HOSTS = Scope(hosts=frozenset({b"api.example.com", b"Old.Example.com:8080", b"[::1]"}))
PATHS = Scope(path_prefixes=(b"/api/", b"/v1"))
NETS = Scope(networks=nets("10.0.0.0/8", "192.168.1.0/24", "2001:db8::/32", "::1/128"))
ALL = Scope(
    hosts=frozenset({b"api.example.com"}), path_prefixes=(b"/api/",), networks=nets("10.0.0.0/8")
)


@pytest.mark.parametrize(
    ("scope", "host", "target", "client_ip", "expected"),
    [
        # No criterion: everything is in scope, even with no Host and an unknown peer.
        pytest.param(Scope(), None, b"/", b"-", True, id="empty-scope"),
        # Hosts: case-insensitive, without :port or a trailing dot.
        pytest.param(HOSTS, b"api.example.com", b"/", b"1.2.3.4", True, id="host"),
        pytest.param(HOSTS, b"API.Example.COM", b"/", b"1.2.3.4", True, id="host-case"),
        pytest.param(HOSTS, b"api.example.com:8443", b"/", b"1.2.3.4", True, id="host-port"),
        pytest.param(HOSTS, b"api.example.com.", b"/", b"1.2.3.4", True, id="host-dot"),
        pytest.param(HOSTS, b"old.example.com", b"/", b"1.2.3.4", True, id="config-had-a-port"),
        pytest.param(HOSTS, b"[::1]:8080", b"/", b"1.2.3.4", True, id="host-v6-literal-port"),
        pytest.param(HOSTS, b"other.example.com", b"/", b"1.2.3.4", False, id="other-host"),
        pytest.param(HOSTS, b"example.com", b"/", b"1.2.3.4", False, id="parent-domain"),
        pytest.param(HOSTS, b"xapi.example.com", b"/", b"1.2.3.4", False, id="not-a-suffix"),
        pytest.param(HOSTS, None, b"/", b"1.2.3.4", False, id="no-host"),
        pytest.param(HOSTS, b"", b"/", b"1.2.3.4", False, id="empty-host"),
        # Absolute-form: the target's host wins over the Host header (RFC 9112 §3.2.2).
        pytest.param(HOSTS, b"other", b"http://API.example.com:80/x", b"-", True, id="abs-host"),
        pytest.param(HOSTS, b"api.example.com", b"http://other/x", b"-", False, id="abs-other"),
        pytest.param(HOSTS, None, b"http://u@api.example.com/", b"-", True, id="abs-userinfo"),
        # Path prefixes: byte prefixes of the path, case-sensitive, not of the query.
        pytest.param(PATHS, None, b"/api/users", b"-", True, id="path"),
        pytest.param(PATHS, None, b"/api/", b"-", True, id="path-exact"),
        pytest.param(PATHS, None, b"/api", b"-", False, id="path-without-slash"),
        pytest.param(PATHS, None, b"/API/users", b"-", False, id="path-case"),
        pytest.param(PATHS, None, b"/v1", b"-", True, id="second-prefix"),
        pytest.param(PATHS, None, b"/v10/x", b"-", True, id="byte-prefix-not-segment"),
        pytest.param(PATHS, None, b"/other?next=/api/", b"-", False, id="prefix-in-query"),
        pytest.param(PATHS, None, b"/api/?q=1", b"-", True, id="path-with-query"),
        pytest.param(PATHS, None, b"*", b"-", False, id="asterisk-form"),
        pytest.param(PATHS, b"h", b"http://h/api/users", b"-", True, id="abs-path"),
        pytest.param(PATHS, b"h", b"HTTP://h:80/v1?x", b"-", True, id="abs-path-query"),
        pytest.param(PATHS, b"h", b"http://h/other", b"-", False, id="abs-other-path"),
        pytest.param(PATHS, b"h", b"http://api/v2", b"-", False, id="abs-host-is-not-path"),
        pytest.param(PATHS, b"h", b"http://h?/api/", b"-", False, id="abs-empty-path-query"),
        pytest.param(PATHS, b"h", b"http://h", b"-", False, id="abs-no-path"),
        pytest.param(Scope(path_prefixes=(b"/",)), b"h", b"http://h", b"-", True, id="abs-root"),
        pytest.param(Scope(path_prefixes=(b"/",)), b"h", b"http://h#f", b"-", True, id="abs-frag"),
        # Networks: IPv4, IPv6, IPv4-mapped IPv6; an unparsable address never matches.
        pytest.param(NETS, None, b"/", b"10.1.2.3", True, id="v4"),
        pytest.param(NETS, None, b"/", b"192.168.1.255", True, id="v4-second-network"),
        pytest.param(NETS, None, b"/", b"192.168.2.1", False, id="v4-outside"),
        pytest.param(NETS, None, b"/", b"11.0.0.1", False, id="v4-other"),
        pytest.param(NETS, None, b"/", b"2001:db8::1", True, id="v6"),
        pytest.param(NETS, None, b"/", b"2001:DB8:ffff::1", True, id="v6-upper-case"),
        pytest.param(NETS, None, b"/", b"2001:db9::1", False, id="v6-outside"),
        pytest.param(NETS, None, b"/", b"::1", True, id="v6-loopback"),
        pytest.param(NETS, None, b"/", b"::ffff:10.0.0.1", True, id="v4-mapped"),
        pytest.param(NETS, None, b"/", b"-", False, id="unknown-peer"),
        pytest.param(NETS, None, b"/", b"", False, id="empty-ip"),
        pytest.param(NETS, None, b"/", b"10.0.0.256", False, id="bad-v4"),
        pytest.param(NETS, None, b"/", b"10.0.0.1/8", False, id="a-network-not-an-ip"),
        pytest.param(NETS, None, b"/", b"\xff\xfe", False, id="not-ascii"),
        pytest.param(NETS, None, b"/", b"localhost", False, id="a-name"),
        # Every non-empty criterion must match.
        pytest.param(ALL, b"api.example.com", b"/api/x", b"10.0.0.1", True, id="all-match"),
        pytest.param(ALL, b"other", b"/api/x", b"10.0.0.1", False, id="all-but-host"),
        pytest.param(ALL, b"api.example.com", b"/x", b"10.0.0.1", False, id="all-but-path"),
        pytest.param(ALL, b"api.example.com", b"/api/x", b"11.0.0.1", False, id="all-but-net"),
    ],
)
def test_matches(
    scope: Scope, host: bytes | None, target: bytes, client_ip: bytes, expected: bool
) -> None:
    assert scope.matches(host, target, client_ip) is expected
    # The two halves a caller may evaluate apart (the client half once per connection).
    assert (scope.matches_request(host, target) and scope.matches_client(client_ip)) is expected


def test_scoped_v6_link_local_address() -> None:
    assert Scope(networks=nets("fe80::/10")).matches_client(b"fe80::1%eth0")


@pytest.mark.parametrize(
    ("host", "key"),
    [
        (b"Example.COM", b"example.com"),
        (b"example.com:80", b"example.com"),
        (b"example.com.:80", b"example.com"),
        (b" example.com ", b"example.com"),
        (b"[2001:DB8::1]:443", b"[2001:db8::1]"),
        (b"[::1", b"[::1"),
        (b"10.0.0.1:8080", b"10.0.0.1"),
        (b"", b""),
    ],
)
def test_host_key(host: bytes, key: bytes) -> None:
    assert host_key(host) == key


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (b"/p?q", None),
        (b"*", None),
        (b"example.com:443", None),
        (b"://x/p", None),
        (b"http://h/p/q?x#y", (b"h", b"/p/q")),
        (b"https://h:8443", (b"h:8443", b"/")),
        (b"http://user:pw@h/p", (b"h", b"/p")),
        (b"http://h#/p", (b"h", b"/")),
    ],
)
def test_split_absolute_form(target: bytes, expected: tuple[bytes, bytes] | None) -> None:
    assert split_absolute_form(target) == expected


@pytest.mark.parametrize(
    ("client_ip", "expected"),
    [
        (b"127.0.0.1", ipaddress.IPv4Address("127.0.0.1")),
        (b"::1", ipaddress.IPv6Address("::1")),
        (b"::ffff:1.2.3.4", ipaddress.IPv4Address("1.2.3.4")),
        (b"-", None),
        (b"\xc3\xa9", None),
    ],
)
def test_parse_client_ip(
    client_ip: bytes, expected: ipaddress.IPv4Address | ipaddress.IPv6Address | None
) -> None:
    assert parse_client_ip(client_ip) == expected


@pytest.mark.parametrize("prefix", [b"api", b"", b"/api?x", b"/a#b"])
def test_bad_path_prefix_is_rejected(prefix: bytes) -> None:
    with pytest.raises(ValueError, match="path prefix"):
        Scope(path_prefixes=(prefix,))


def test_hosts_are_normalised_once_and_the_scope_is_frozen() -> None:
    assert Scope(hosts=frozenset({b"A.example:1", b"a.example"})).hosts == {b"a.example"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        HOSTS.hosts = frozenset()  # type: ignore[misc]
