# The kinds of value migproxy's configuration is made of, beyond the generic ones of values.py:
# addresses, host names, paths, networks, epochs, worker counts. Each validator takes the raw
# TOML value and returns the typed one, or raises the ValueError of values.wrong() saying what
# was expected; config.py puts them in its table of sections.
from __future__ import annotations

import datetime
import ipaddress
import os
import re
import time
from dataclasses import dataclass

from migproxy.values import is_int, string_list, wrong


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Epoch:
    """The start of a migration epoch: connections opened before it are stale."""

    at: float | None = None  # Unix time; None: no epoch
    # As configured: a reload sets a new epoch only when this changes ("now" stays "now").
    text: str = ""


_HOSTNAME = re.compile(r"[A-Za-z0-9._-]+")


def parse_address(text: str) -> Address:
    """Parse "host:port" or "[ipv6]:port"; raise ValueError saying what is wrong."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError('IPv6 address must be written "[addr]:port"')
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"invalid IPv6 address {host!r}") from None
        return Address(host, _parse_port(port))
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ValueError("missing port")
    if "/" in text:
        raise ValueError("must not contain a scheme or a path")
    if ":" in host:
        raise ValueError('IPv6 address must be in brackets, e.g. "[::1]:8080"')
    if not host:
        raise ValueError("missing host")
    if not _HOSTNAME.fullmatch(host):
        raise ValueError(f"invalid host {host!r}")
    return Address(host, _parse_port(port))


def _parse_port(text: str) -> int:
    if text.isascii() and text.isdigit() and 1 <= int(text) <= 65535:
        return int(text)
    raise ValueError("port must be an integer between 1 and 65535")


def host_port(value: object) -> Address:
    if not isinstance(value, str):
        raise wrong('a "host:port" string', value)
    try:
        return parse_address(value)
    except ValueError as err:
        raise wrong(f'"host:port" or "[ipv6]:port" ({err})', value) from None


def host_port_or_off(value: object) -> Address | None:
    if value == "":
        return None
    return host_port(value)


_LABEL_VALUE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")


def label_value(value: object) -> str:
    if isinstance(value, str) and _LABEL_VALUE.fullmatch(value):
        return value
    raise wrong("1 to 32 of a-z, 0-9, '_', '.', '-' (starting with a letter or digit)", value)


def token(value: object) -> str:
    if isinstance(value, str) and value.isprintable() and " " not in value:
        return value
    raise wrong("a string of printable characters without spaces", value)


def _nameserver(text: str) -> Address:
    try:
        return Address(str(ipaddress.ip_address(text)), 53)
    except ValueError:
        if ":" not in text:
            raise ValueError("not an IP address (a name server must be an IP address)") from None
    address = parse_address(text)
    try:
        ipaddress.ip_address(address.host)
    except ValueError:
        raise ValueError("a name server must be an IP address, not a name") from None
    return address


name_servers = string_list(
    'an array of IP addresses, each "ip", "ip:port" or "[ipv6]:port"', _nameserver
)

_PATH = re.compile(r"/[!-~]*")


def http_path(value: object) -> str:
    if isinstance(value, str) and _PATH.fullmatch(value):
        return value
    raise wrong('a path starting with "/" (printable ASCII, no spaces)', value)


def host_or_empty(value: object) -> str:
    if isinstance(value, str) and (value == "" or re.fullmatch(r"[A-Za-z0-9.:\[\]_-]+", value)):
        return value
    raise wrong("a host name (optionally with :port) or an empty string", value)


def _scope_host(text: str) -> str:
    if not _HOSTNAME.fullmatch(text):
        raise ValueError("not a host name")
    return text.lower()


def _scope_path(text: str) -> str:
    if not _PATH.fullmatch(text) or "?" in text or "#" in text:
        raise ValueError('not a path prefix starting with "/" (without "?" or "#")')
    return text


def _scope_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError('not an IP network such as "10.0.0.0/8" or "::1/128"') from None


host_list = string_list("an array of host names", _scope_host)
path_prefix_list = string_list('an array of path prefixes ("/api")', _scope_path)
network_list = string_list('an array of networks ("10.0.0.0/8")', _scope_network)


def epoch_time(value: object) -> Epoch:
    """`[migration] epoch`: "" (none), "now", or an RFC 3339 time with a UTC offset."""
    if not isinstance(value, str):
        raise wrong('an RFC 3339 time, "now" or ""', value)
    if value == "":
        return Epoch()
    if value == "now":
        return Epoch(time.time(), value)
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise wrong('an RFC 3339 time such as "2026-11-26T10:00:00Z", "now" or ""', value) from None
    if moment.tzinfo is None:
        raise wrong("an RFC 3339 time with a UTC offset (Z or +hh:mm)", value)
    return Epoch(moment.timestamp(), value)


def worker_count(value: object) -> int:
    if value == "auto":
        return (
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else os.cpu_count() or 1
        )
    if is_int(value) and 1 <= value <= 256:
        return value
    raise wrong('an integer between 1 and 256, or "auto" (one per CPU)', value)


def dns_name_or_empty(value: object) -> str:
    if isinstance(value, str) and (value == "" or _HOSTNAME.fullmatch(value)):
        return value
    raise wrong('a DNS name such as "api.example.com", or ""', value)


def _ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError("not an IP address") from None


ip_list = string_list("an array of IP addresses", _ip)
