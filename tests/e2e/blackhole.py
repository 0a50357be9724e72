# Dead peers for the end-to-end tests: make one loopback TCP port vanish silently, and watch
# what the kernel then does with the connections to it (through `ss`).
#
# Mechanism: an nftables table of our own with one chain on the prerouting hook (raw
# priority, before connection tracking), which drops every loopback packet to or from the
# port before the receiving socket sees it. Nothing is refused or reset, and the sending
# side is left alone (its segments and retransmissions go out as usual and are never
# heard), so both ends see exactly what a host that went away, or a firewall that drops
# the flow, looks like: silence. Only `iif lo` traffic of that one port is touched.
#
# Rules: each blackhole has its own table, named after this process and a counter, so tests
# running at the same time never touch each other's rules; leaving the context manager
# always deletes it (deleting twice is fine), and entering one first deletes tables left by
# test processes that no longer exist (a run killed before its cleanup), so a stale rule can
# never drop the traffic of a later test that drew the same port.
from __future__ import annotations

import contextlib
import itertools
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

from tests.conftest import require_tool, unavailable

TABLE_PREFIX = "migproxy_blackhole_"
NFT_TIMEOUT = 10.0
_serial = itertools.count()

RULESET = """
table inet {table} {{
  chain prerouting {{
    type filter hook prerouting priority raw; policy accept;
    iif "lo" tcp dport {port} drop
    iif "lo" tcp sport {port} drop
  }}
}}
"""


def _nft(nft: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [nft, *args], input=stdin, capture_output=True, text=True, timeout=NFT_TIMEOUT
    )


def require_blackhole() -> str:
    """The nft binary, once it has shown it can add and delete a table here.

    Like require_tool: fails under CI=true (the machine must run these tests), skips
    elsewhere (no nftables, not root, or a kernel without nf_tables).
    """
    nft = require_tool("nft")
    table = f"{TABLE_PREFIX}probe_{os.getpid()}"
    added = _nft(nft, "add", "table", "inet", table)
    _nft(nft, "delete", "table", "inet", table)
    if added.returncode != 0:
        unavailable(f"nftables unusable here (needs root and nf_tables): {added.stderr.strip()}")
    return nft


def _tables(nft: str) -> list[str]:
    listed = _nft(nft, "list", "tables", "inet")
    listed.check_returncode()
    return re.findall(r"^table inet (\S+)$", listed.stdout, re.MULTILINE)


def _delete_table(nft: str, table: str) -> None:
    """Delete `table` if it exists; raise if it is still there afterwards."""
    deleted = _nft(nft, "delete", "table", "inet", table)
    if deleted.returncode != 0 and table in _tables(nft):
        raise RuntimeError(f"cannot delete nftables table {table}: {deleted.stderr.strip()}")


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # running, as another user
        pass
    return True


def _delete_stale_tables(nft: str) -> None:
    for table in _tables(nft):
        owner = re.fullmatch(TABLE_PREFIX + r"(?:probe_)?(\d+)(?:_\d+)?", table)
        if owner is not None and not _is_alive(int(owner.group(1))):
            _delete_table(nft, table)


@contextlib.contextmanager
def blackhole(port: int) -> Iterator[str]:
    """Drop every loopback TCP packet to or from `port` until the block ends.

    Yields the name of the nftables table that does it. Connections to the port stay open
    on both sides; they just stop hearing from each other, and new ones hang in SYN-SENT.
    """
    nft = require_blackhole()
    _delete_stale_tables(nft)
    table = f"{TABLE_PREFIX}{os.getpid()}_{next(_serial)}"
    try:
        added = _nft(nft, "-f", "-", stdin=RULESET.format(table=table, port=port))
        if added.returncode != 0:
            raise RuntimeError(f"nft rejected the blackhole ruleset: {added.stderr.strip()}")
        yield table
    finally:
        _delete_table(nft, table)


def table_exists(table: str) -> bool:
    return table in _tables(require_tool("nft"))


# The kernel's view of TCP sockets: `ss -tnoi`. `-o` adds the socket's running timer, e.g.
# "timer:(keepalive,16sec,0)": which timer, the time left, and the probes sent so far.


@dataclass(frozen=True, slots=True)
class TcpSocket:
    """One socket as `ss -tnoi` shows it."""

    state: str  # ss's short names: ESTAB, SYN-SENT, FIN-WAIT-1, ...
    local_port: int
    peer_port: int
    timer: str | None  # "keepalive", "on" (retransmission), "persist", ... or None
    timer_left: float | None  # seconds until the timer fires
    line: str  # the whole line, for assertion messages

    @property
    def has_keepalive_timer(self) -> bool:
        return self.timer == "keepalive"


_TIMER = re.compile(r"timer:\((\w+),([^,)]*),\d+\)")
# ss prints the time left as "1min59sec", "16sec", "200ms" or "5.123ms" (5.123 s).
_TIME_LEFT = re.compile(r"(?:(\d+)min)?(?:(\d+)(sec|\.))?(?:(\d+)ms)?")


def _seconds(text: str) -> float | None:
    match = _TIME_LEFT.fullmatch(text)
    if match is None:
        return None
    minutes, secs, _, millis = (int(g) if g and g.isdigit() else 0 for g in match.groups())
    return minutes * 60 + secs + millis / 1000


def _port(address: str) -> int:
    return int(address.rpartition(":")[2])


def tcp_sockets(port: int) -> list[TcpSocket]:
    """The TCP sockets (not listening, not closed) with `port` at either end."""
    ss = require_tool("ss")
    out = subprocess.run(
        [ss, "-tnoiH", f"( sport = :{port} or dport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
        timeout=NFT_TIMEOUT,
    ).stdout
    sockets = []
    for line in out.splitlines():
        if not line or line[0].isspace():
            continue  # the -i detail line that follows each socket
        fields = line.split()
        timer = _TIMER.search(line)
        sockets.append(
            TcpSocket(
                state=fields[0],
                local_port=_port(fields[3]),
                peer_port=_port(fields[4]),
                timer=timer.group(1) if timer else None,
                timer_left=_seconds(timer.group(2)) if timer else None,
                line=line,
            )
        )
    return sockets
