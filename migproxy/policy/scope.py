# Which requests the injection policies apply to: Host header values, path prefixes, client
# networks. Pure: the request's host, target and client address in, a yes or no out.
#
# Rules (issue #5):
# - Each non-empty criterion must match; an empty one does not restrict. A Scope with no
#   criterion matches every request.
# - Hosts compare case-insensitively (RFC 9110 §4.2.3), without a :port and without a trailing
#   dot. For an absolute-form target (`http://h/p`, RFC 9112 §3.2.2) the host is the target's,
#   and the Host header is ignored, as a server must.
# - Path prefixes are byte prefixes of the target's path (not its query), case-sensitive and
#   not percent-decoded: "/api" also matches "/apix"; write "/api/" to match a directory only.
# - A client address that does not parse (b"-" when the peer is unknown) never matches a
#   networks criterion. An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, from a dual-stack
#   listener) is matched as the IPv4 address it carries.
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def host_key(host: bytes) -> bytes:
    """A Host value as scopes compare it: lower case, no :port, no trailing dot."""
    host = host.strip().lower()
    if host.startswith(b"["):  # an IPv6 literal, RFC 3986 §3.2.2: "[::1]:8080"
        end = host.find(b"]")
        return host[: end + 1] if end >= 0 else host
    host = host.partition(b":")[0]
    return host[:-1] if host.endswith(b".") else host


def split_absolute_form(target: bytes) -> tuple[bytes, bytes] | None:
    """(authority host, path) of an absolute-form target, or None for any other form.

    The path runs to the query; an empty path is "/" (RFC 9110 §4.2.3). Userinfo, which a
    request must not carry anyway, is dropped from the host.
    """
    if target.startswith(b"/"):
        return None  # origin-form: the common case, decided on its first byte
    scheme_end = target.find(b"://")
    if scheme_end <= 0:
        return None  # asterisk-form ("*") or authority-form (CONNECT, never in scope)
    start = scheme_end + 3
    end = len(target)
    for stop in (b"/", b"?", b"#"):
        found = target.find(stop, start, end)
        if found >= 0:
            end = found
    authority = target[start:end].rpartition(b"@")[2]
    path = target[end:].partition(b"?")[0].partition(b"#")[0]
    return authority, path if path.startswith(b"/") else b"/"


def parse_client_ip(client_ip: bytes) -> Address | None:
    """The address of an ASCII client IP such as b"127.0.0.1" or b"::1"; None if it is not one."""
    try:
        address = ipaddress.ip_address(client_ip.decode("ascii"))
    except ValueError:  # UnicodeDecodeError is a ValueError too
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True, slots=True)
class Scope:
    """The requests an injection policy applies to; see the rules above.

    Hosts are normalised by host_key on construction, so b"Example.COM:443" in a config
    matches a Host of b"example.com".

    Raises:
        ValueError: a path prefix that does not start with "/" or that holds "?" or "#" (it
            could never match a path).
    """

    hosts: frozenset[bytes] = frozenset()
    path_prefixes: tuple[bytes, ...] = ()
    networks: tuple[Network, ...] = ()

    def __post_init__(self) -> None:
        for prefix in self.path_prefixes:
            if not prefix.startswith(b"/") or b"?" in prefix or b"#" in prefix:
                raise ValueError(f"path prefix {prefix!r}: must start with / and hold no ? or #")
        # Frozen: normalised once, here.
        object.__setattr__(self, "hosts", frozenset(host_key(h) for h in self.hosts))

    def matches(self, host: bytes | None, target: bytes, client_ip: bytes) -> bool:
        """Whether a request is in scope.

        Args:
            host: the Host header value, None when the request has none.
            target: the request target as received (origin-form or absolute-form).
            client_ip: the client's address in ASCII, e.g. b"127.0.0.1" or b"::1".

        Returns:
            True when every non-empty criterion matches.
        """
        return self.matches_request(host, target) and self.matches_client(client_ip)

    def matches_client(self, client_ip: bytes) -> bool:
        """The networks criterion alone: constant for a connection, so callers may keep it."""
        if not self.networks:
            return True
        address = parse_client_ip(client_ip)
        return address is not None and any(address in network for network in self.networks)

    def matches_request(self, host: bytes | None, target: bytes) -> bool:
        """The hosts and path prefixes criteria alone."""
        if not self.hosts and not self.path_prefixes:
            return True
        absolute = split_absolute_form(target)
        if absolute is not None:
            host, path = absolute
        else:
            # No prefix holds "?" or "#", so a prefix of the whole target is a prefix of its path.
            path = target
        if self.hosts and (host is None or host_key(host) not in self.hosts):
            return False
        return not self.path_prefixes or path.startswith(self.path_prefixes)
