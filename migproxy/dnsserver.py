# A small authoritative DNS server on asyncio (dnspython messages): the name server of the
# resolver tests and of `migproxy lab`, whose answers and failures are changed at run time.
#
# Rules: it serves UDP and TCP on one address and port; it answers A and AAAA from the records
# set by its owner and nothing else (no zones, no SOA, no recursion); a packet it cannot parse
# is dropped, so no input crashes it. It is not on the proxy's data path.
#
# A name is either plain (set_records: every address of the asked family, each time) or
# weighted (set_weighted: one address per query, drawn by weight, as a GSLB answers), so the
# migration watcher and the lab see the answer share move when the weights do.
from __future__ import annotations

import asyncio
import errno
import ipaddress
import math
import random
import struct
from dataclasses import dataclass
from typing import Literal, cast

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

Mode = Literal["answer", "servfail", "drop"]
MODES: tuple[Mode, ...] = ("answer", "servfail", "drop")

# UDP answers larger than this are truncated (TC set) when the query carries no EDNS payload
# size: RFC 1035 §4.2.1 limits plain UDP messages to 512 bytes.
UDP_PLAIN_LIMIT = 512
TCP_LIMIT = 65535  # the 2-byte length prefix
# Port 0 picks a free UDP port; the same TCP port may be taken, so pick again, a few times.
BIND_ATTEMPTS = 20


@dataclass(frozen=True, slots=True)
class _Addresses:
    """The records of one name, all of them in every answer."""

    ipv4: tuple[str, ...]
    ipv6: tuple[str, ...]
    ttl: int

    def select(self, rdtype: dns.rdatatype.RdataType) -> tuple[str, ...]:
        """The addresses answering a query of `rdtype` (none: a NODATA answer)."""
        if rdtype == dns.rdatatype.A:
            return self.ipv4
        if rdtype == dns.rdatatype.AAAA:
            return self.ipv6
        return ()


@dataclass(frozen=True, slots=True)
class _Weighted:
    """The records of a GSLB-style name: each query gets one address of its family, drawn at
    random by weight (only addresses of positive weight are kept)."""

    ipv4: tuple[tuple[str, ...], tuple[float, ...]]  # addresses and their weights
    ipv6: tuple[tuple[str, ...], tuple[float, ...]]
    ttl: int
    rng: random.Random

    def select(self, rdtype: dns.rdatatype.RdataType) -> tuple[str, ...]:
        """One address drawn for a query of `rdtype` (none: a NODATA answer, as when every
        address of that family has weight 0)."""
        if rdtype == dns.rdatatype.A:
            addresses, weights = self.ipv4
        elif rdtype == dns.rdatatype.AAAA:
            addresses, weights = self.ipv6
        else:
            return ()
        if not addresses:
            return ()
        return tuple(self.rng.choices(addresses, weights))


def _by_weight(
    weights: list[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, float]], version: int
) -> tuple[tuple[str, ...], tuple[float, ...]]:
    kept = [(str(ip), weight) for ip, weight in weights if ip.version == version and weight > 0]
    return tuple(address for address, _ in kept), tuple(weight for _, weight in kept)


class DnsServer:
    """An authoritative server for the names given to `set_records` or `set_weighted`, on
    UDP and TCP.

    Attributes:
        port: the port both transports listen on (chosen by `start` when 0 was given).
        queries: well-formed queries received so far, answered or not (malformed packets
            are not counted).
    """

    __slots__ = ("host", "port", "queries", "_mode", "_names", "_udp", "_tcp", "_streams")

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.queries = 0
        self._mode: Mode = "answer"
        self._names: dict[dns.name.Name, _Addresses | _Weighted] = {}
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._streams: set[asyncio.Transport] = set()

    def set_records(self, name: str, addresses: list[str], ttl: int) -> None:
        """Answer A queries for `name` with its IPv4 addresses, AAAA with its IPv6 ones (all
        of them, in every answer); replaces any records of `name`.

        Raises:
            ValueError: an address is not an IP address, or `ttl` is negative.
            dns.exception.DNSException: `name` is not a valid domain name.
        """
        if ttl < 0:
            raise ValueError(f"ttl must be >= 0, not {ttl}")
        parsed = [ipaddress.ip_address(address) for address in addresses]
        self._names[dns.name.from_text(name)] = _Addresses(
            ipv4=tuple(str(ip) for ip in parsed if ip.version == 4),
            ipv6=tuple(str(ip) for ip in parsed if ip.version == 6),
            ttl=ttl,
        )

    def set_weighted(
        self,
        name: str,
        weights: dict[str, float],
        ttl: int,
        rng: random.Random | None = None,
    ) -> None:
        """Answer each A (AAAA) query for `name` with ONE of its IPv4 (IPv6) addresses, drawn
        at random in proportion to its weight, as a GSLB does; replaces any records of `name`.

        Args:
            name: the domain name.
            weights: weight of each address, >= 0; 0 means never (a family whose weights are
                all 0 gets NODATA answers). Only the ratios matter: {a: 3, b: 1} is 75/25.
            ttl: the TTL of every answer, in seconds.
            rng: the random source of the draws (seed one for a reproducible sequence).

        Raises:
            ValueError: an address is not an IP address, a weight is negative or not finite,
                or `ttl` is negative.
            dns.exception.DNSException: `name` is not a valid domain name.
        """
        if ttl < 0:
            raise ValueError(f"ttl must be >= 0, not {ttl}")
        parsed = []
        for address, weight in weights.items():
            if not (math.isfinite(weight) and weight >= 0):
                raise ValueError(f"weight of {address} must be a finite number >= 0, not {weight}")
            parsed.append((ipaddress.ip_address(address), weight))
        self._names[dns.name.from_text(name)] = _Weighted(
            ipv4=_by_weight(parsed, 4),
            ipv6=_by_weight(parsed, 6),
            ttl=ttl,
            rng=rng if rng is not None else random.Random(),
        )

    def set_mode(self, mode: Mode) -> None:
        """How queries are handled from now on.

        "answer" answers from the records; "servfail" answers every query with SERVFAIL;
        "drop" reads every query and never answers (an outage that makes clients time out).

        Raises:
            ValueError: `mode` is none of these.
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self._mode = mode

    async def start(self) -> None:
        """Listen on UDP and TCP, on `port` or (if 0) on a free port shared by both.

        Raises:
            OSError: the address cannot be bound.
        """
        loop = asyncio.get_running_loop()
        for _ in range(BIND_ATTEMPTS):
            udp, _protocol = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(self.host, self.port)
            )
            port: int = udp.get_extra_info("sockname")[1]
            try:
                self._tcp = await loop.create_server(
                    lambda: _TcpProtocol(self, self._streams), self.host, port
                )
            except OSError as err:
                udp.close()
                if self.port != 0 or err.errno != errno.EADDRINUSE:
                    raise
                continue
            self._udp, self.port = udp, port
            return
        raise OSError(errno.EADDRINUSE, f"no free port for UDP and TCP on {self.host}")

    async def stop(self) -> None:
        """Close both listeners and every open TCP connection."""
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            for transport in list(self._streams):
                transport.close()
            await self._tcp.wait_closed()
            self._tcp = None

    def respond(self, wire: bytes) -> dns.message.Message | None:
        """The response to one query packet, or None when it gets none (malformed, not a
        query, or the server is in "drop" mode)."""
        try:
            query = dns.message.from_wire(wire)
        except Exception:  # any parser failure: a malformed packet is dropped, never fatal
            return None
        if query.flags & dns.flags.QR:
            return None
        self.queries += 1
        if self._mode == "drop":
            return None
        response = dns.message.make_response(query)
        if self._mode == "servfail":
            response.set_rcode(dns.rcode.SERVFAIL)
        elif query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
        elif len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
        else:
            self._answer(query.question[0], response)
        return response

    def _answer(self, question: dns.rrset.RRset, response: dns.message.Message) -> None:
        if question.rdclass != dns.rdataclass.IN:
            response.set_rcode(dns.rcode.REFUSED)
            return
        response.flags |= dns.flags.AA
        entry = self._names.get(question.name)
        if entry is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
            return
        addresses = entry.select(question.rdtype)
        if addresses:  # else NODATA: NOERROR with an empty answer section
            response.answer.append(
                dns.rrset.from_text_list(
                    question.name, entry.ttl, dns.rdataclass.IN, question.rdtype, addresses
                )
            )


class _UdpProtocol(asyncio.DatagramProtocol):
    __slots__ = ("server", "transport")

    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a cast, not an isinstance check: CPython 3.11's selector datagram transport does not
        # subclass asyncio.DatagramTransport
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        response = self.server.respond(data)
        if response is None or self.transport is None:
            return
        limit = response.request_payload or UDP_PLAIN_LIMIT
        self.transport.sendto(response.to_wire(max_size=limit, prefer_truncation=True), addr)


class _TcpProtocol(asyncio.Protocol):
    """One TCP connection: queries and responses prefixed with their 2-byte length
    (RFC 1035 §4.2.2), several per connection."""

    __slots__ = ("server", "streams", "transport", "buffer")

    def __init__(self, server: DnsServer, streams: set[asyncio.Transport]) -> None:
        self.server = server
        self.streams = streams  # the server's open connections, closed by its stop()
        self.transport: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.streams.add(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.streams.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= 2:
            (length,) = struct.unpack_from("!H", self.buffer)
            if len(self.buffer) < 2 + length:
                return
            query, self.buffer = self.buffer[2 : 2 + length], self.buffer[2 + length :]
            response = self.server.respond(query)
            if response is not None and self.transport is not None:
                self.transport.write(
                    response.to_wire(
                        max_size=TCP_LIMIT, prepend_length=True, prefer_truncation=True
                    )
                )
