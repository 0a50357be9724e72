# Loopback addresses and ports for the lab, checked before anything is started, so that an
# unusable address or a taken port is one clear message instead of a proxy that dies at start.
#
# The lab runs on loopback only: the old VIP is 127.0.0.2, the new VIP 127.0.0.3, clients
# connect from 127.1.x.y and everything else (DNS, backends, admin endpoints) is on 127.0.0.1.
# Linux routes all of 127.0.0.0/8 to the loopback interface; other systems may need aliases.
from __future__ import annotations

import errno
import random
import socket
from collections.abc import Sequence

OLD_VIP = "127.0.0.2"
NEW_VIP = "127.0.0.3"
LOCAL = "127.0.0.1"
PORT_ATTEMPTS = 50
# Ports this process has handed out. A port picked by binding to port 0 is free again once
# that socket closes, so the kernel may pick it twice while several policy runs start at
# once; and migproxy listens with SO_REUSEPORT, so two proxies could then share one port and
# each other's clients. No port is handed out twice.
_HANDED_OUT: set[int] = set()
# A port handed out is bound by a proxy process a moment later. Meanwhile the kernel could
# give it to any socket bound to port 0 (the lab's backends and DNS server) or to an outgoing
# connection, and the proxy would fail to start. Ports below the kernel's own range
# (ip_local_port_range) are never given out that way, so the lab picks them there.
LAB_PORTS_LOW = 20000


def _lab_ports() -> range:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as file:
            kernel_low = int(file.read().split()[0])
    except (OSError, ValueError, IndexError):
        kernel_low = 32768  # Linux's default; elsewhere the range starts higher still
    return range(LAB_PORTS_LOW, kernel_low)  # empty if the kernel's range reaches below


_LAB_PORTS = _lab_ports()
_random = random.Random()


class LabError(Exception):
    """The lab cannot run (an address, a port, a process that would not start); str() is the
    message for the user."""


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def check_addresses(addresses: Sequence[str]) -> None:
    """Raise LabError unless every address can be bound here.

    Raises:
        LabError: naming the address, the reason and how to fix it.
    """
    for host in addresses:
        try:
            _bind(host, 0).close()
        except OSError as err:
            hint = (
                " (Linux routes all of 127.0.0.0/8 to lo; elsewhere add an alias, e.g. "
                f"`sudo ifconfig lo0 alias {host} up` on macOS)"
                if err.errno == errno.EADDRNOTAVAIL
                else ""
            )
            raise LabError(f"{host} is not usable here: {err.strerror or err}{hint}") from None


def free_port(host: str = LOCAL) -> int:
    """A port free on `host` now, never one handed out before, below the kernel's range of
    ports for port 0 and outgoing connections (if there is room below it).

    Raises:
        LabError: no such port was found.
    """
    for _ in range(PORT_ATTEMPTS):
        candidate = _random.choice(_LAB_PORTS) if _LAB_PORTS else 0
        if candidate in _HANDED_OUT:
            continue
        try:
            with _bind(host, candidate) as sock:
                port: int = sock.getsockname()[1]
        except OSError:
            continue  # taken: try another
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise LabError(f"no free port on {host}")


def service_port(hosts: Sequence[str], port: int = 0) -> int:
    """A port free on every one of `hosts` (both VIPs): `port` itself, or one chosen when 0
    (never one handed out before).

    Raises:
        LabError: `port` is taken on one of them, or no common free port was found.
    """
    if port:
        for host in hosts:
            try:
                _bind(host, port).close()
            except OSError as err:
                raise LabError(f"port {port} on {host} is not usable: {err.strerror}") from None
        return port
    for _ in range(PORT_ATTEMPTS):
        candidate = free_port(hosts[0])
        try:
            for host in hosts[1:]:
                _bind(host, candidate).close()
        except OSError:
            continue  # handed out all the same: it is taken on another host
        return candidate
    raise LabError(f"no port is free on all of {', '.join(hosts)}")
