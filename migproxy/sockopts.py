# Socket options of the TCP connections the proxy holds: keep-alive probing of idle peers,
# and a reset instead of a FIN when a connection is abandoned (reset_on_close).
#
# Rules: this module only sets and reads options on a socket it is given; it never opens,
# closes or waits. It accepts a real socket.socket and what a uvloop transport returns from
# get_extra_info("socket") (uvloop.loop.PseudoSocket, which has setsockopt/getsockopt but is
# no socket.socket), hence the SocketOptions protocol instead of a concrete type.
#
# Why: without keep-alive a pooled upstream connection whose peer vanished silently (a host
# gone, a firewall dropping the flow) looks idle and healthy until a request is written to
# it. With SO_KEEPALIVE and the TCP_KEEP* options the kernel probes it after `idle` seconds
# of silence and fails it with ETIMEDOUT after `count` unanswered probes `interval` seconds
# apart (tcp(7)). On Linux a socket returned by accept() inherits all of these from the
# listening socket, so setting them once on a listener covers its client connections
# (tests/test_sockopts.py checks this).
from __future__ import annotations

import socket
import struct
from typing import Protocol

from migproxy.config import TcpKeepaliveConfig

# The TCP_KEEP* and TCP_USER_TIMEOUT options are Linux names; on a platform without one of
# them the option is skipped (and read back as the config default).
_TCP_KEEPIDLE: int | None = getattr(socket, "TCP_KEEPIDLE", None)
_TCP_KEEPINTVL: int | None = getattr(socket, "TCP_KEEPINTVL", None)
_TCP_KEEPCNT: int | None = getattr(socket, "TCP_KEEPCNT", None)
_TCP_USER_TIMEOUT: int | None = getattr(socket, "TCP_USER_TIMEOUT", None)


class SocketOptions(Protocol):
    """The part of a socket this module uses: integer options (and SO_LINGER's struct)."""

    def setsockopt(self, level: int, optname: int, value: int | bytes, /) -> None: ...
    def getsockopt(self, level: int, optname: int, /) -> int: ...


# struct linger {l_onoff = 1, l_linger = 0}: close() then discards what is unsent and resets.
_LINGER_ZERO = struct.pack("ii", 1, 0)


def reset_on_close(sock: SocketOptions) -> None:
    """Make the next close of `sock` send a TCP reset instead of a FIN.

    A proxy that must abandon a response it has begun needs this: a FIN ends a response whose
    body is delimited by the connection's end as if it were complete (RFC 9112 §8: such a
    response is complete unless the connection reports an error); a reset is that error.
    asyncio's and uvloop's abort() only close.

    Raises:
        OSError: the socket refused the option (it is already closed).
    """
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)


def apply_tcp_keepalive(sock: SocketOptions, settings: TcpKeepaliveConfig) -> None:
    """Set the keep-alive options of `sock` from `settings`.

    Args:
        sock: a connected or listening TCP socket (socket.socket or uvloop's PseudoSocket).
        settings: when `enabled` is false only SO_KEEPALIVE is cleared; the other options
            keep whatever values the socket has. `user_timeout` 0 restores the kernel's
            default (TCP_USER_TIMEOUT takes milliseconds).

    Raises:
        OSError: the socket refused an option (it is closed, or not TCP).
    """
    if not settings.enabled:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 0)
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (
        (_TCP_KEEPIDLE, settings.idle),
        (_TCP_KEEPINTVL, settings.interval),
        (_TCP_KEEPCNT, settings.count),
        (_TCP_USER_TIMEOUT, round(settings.user_timeout * 1000)),
    ):
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


def read_tcp_keepalive(sock: SocketOptions) -> TcpKeepaliveConfig:
    """The keep-alive options `sock` has now, as a config (for tests and debugging).

    An option the platform lacks reads as the TcpKeepaliveConfig default.

    Raises:
        OSError: the socket refused to report an option.
    """
    default = TcpKeepaliveConfig()

    def tcp_option(option: int | None, fallback: int) -> int:
        return fallback if option is None else sock.getsockopt(socket.IPPROTO_TCP, option)

    user_timeout_ms = tcp_option(_TCP_USER_TIMEOUT, round(default.user_timeout * 1000))
    return TcpKeepaliveConfig(
        enabled=bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)),
        idle=tcp_option(_TCP_KEEPIDLE, default.idle),
        interval=tcp_option(_TCP_KEEPINTVL, default.interval),
        count=tcp_option(_TCP_KEEPCNT, default.count),
        user_timeout=user_timeout_ms / 1000,
    )
