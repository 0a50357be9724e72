# One keep-alive client of the lab fleet: it resolves the service name through the lab's GSLB
# (dnspython, one UDP query per lookup), connects from its own source address, and sends GET
# requests at its own rate on one connection for as long as the server lets it.
#
# Rules (the behaviour of the real clients DESIGN.md §2 measured):
# - A new connection looks the name up again unless this client's cached answer is still
#   fresh: cache 0 s re-resolves every time (requests, httpx, Node), 10 s is aiohttp, 60 s is
#   curl, None honours the answer's TTL. A cache entry ages from its lookup, not from its
#   last use, so a client sent back by a close reuses it until it expires.
# - The connection is closed, and the next request goes through a new one, after a response
#   that announced `Connection: close` (RFC 9112 §9.6) and when the server ended it.
# - Requests are evenly spaced at the client's rate; a late request does not cause a burst.
# - Any failure (DNS, connect, a response missing, malformed, not 200, or from the other VIP's
#   backend) is a client error: the lab's claim is that a migration costs none.
from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

import dns.asyncquery
import dns.exception
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from migproxy.lab.fleet import ClientSpec
from migproxy.lab.http import ProtocolError, read_response, request_bytes
from migproxy.lab.record import VIPS, Recorder

DNS_TIMEOUT = 2.0
CONNECT_TIMEOUT = 3.0
REQUEST_TIMEOUT = 5.0
# What a failed exchange raises: socket errors, the connection ending mid-response, a head
# over the stream limit, a malformed response, a timeout.
EXCHANGE_ERRORS = (
    OSError,
    asyncio.IncompleteReadError,
    asyncio.LimitOverrunError,
    ProtocolError,
    TimeoutError,
)


class LookupFailed(Exception):
    """The service name could not be resolved to one of the two VIPs."""


@dataclass(frozen=True, slots=True)
class Service:
    """Where a policy run's fleet finds its service."""

    name: str  # the GSLB name
    port: int  # the port of both VIPs
    nameserver: tuple[str, int]  # the lab's GSLB DNS server
    vips: tuple[str, str]  # the old and the new VIP's address


class LabClient:
    """One client; `run()` until `stopping` is set (then it ends after its current request)."""

    def __init__(self, spec: ClientSpec, service: Service, recorder: Recorder, start: float):
        self.spec = spec
        self.service = service
        self.recorder = recorder
        self.start = start  # loop time of the fleet's start: recorder times count from it
        self.stopping = False
        self._request = request_bytes(service.name)
        self._answer: tuple[str, int] | None = None  # (address, vip) of the cached lookup
        self._cache_until = -math.inf
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._vip = 0

    def _now(self) -> float:
        return asyncio.get_running_loop().time() - self.start

    async def run(self) -> None:
        """Send requests at the client's rate until stopped; never raises but CancelledError."""
        next_at = self.spec.phase
        try:
            while not self.stopping:
                await asyncio.sleep(max(0.0, next_at - self._now()))
                if self.stopping:
                    break
                await self._one_request()
                next_at = max(next_at + 1.0 / self.spec.rate, self._now())
        finally:
            self._close()

    async def _one_request(self) -> None:
        if self._reader is not None and self._reader.at_eof():
            self._close()  # the server ended the connection while it was idle
        if self._writer is None:
            try:
                await self._connect()
            except LookupFailed as err:
                self.recorder.error(self._now(), self.spec.index, f"dns: {err}")
                return
            except (OSError, TimeoutError) as err:
                self.recorder.error(self._now(), self.spec.index, f"connect: {_reason(err)}")
                return
        assert self._reader is not None and self._writer is not None
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                self._writer.write(self._request)
                head, body = await read_response(self._reader)
        except EXCHANGE_ERRORS as err:
            self._close()
            self.recorder.error(self._now(), self.spec.index, f"request: {_reason(err)}")
            return
        now = self._now()
        if head.status != 200:
            self.recorder.error(now, self.spec.index, f"status {head.status}")
        elif body.strip() != VIPS[self._vip].encode():
            self.recorder.error(now, self.spec.index, "answered by the other VIP's backend")
        else:
            self.recorder.request(now, self.spec.index, self._vip, closed=not head.keep_alive)
        if not head.keep_alive:
            self._close()

    async def _connect(self) -> None:
        address, vip = await self._resolve()
        async with asyncio.timeout(CONNECT_TIMEOUT):
            self._reader, self._writer = await asyncio.open_connection(
                address, self.service.port, local_addr=(self.spec.source, 0)
            )
        self._vip = vip
        self.recorder.connect(self._now(), self.spec.index, vip)

    async def _resolve(self) -> tuple[str, int]:
        if self._answer is not None and self._now() < self._cache_until:
            return self._answer
        host, port = self.service.nameserver
        query = dns.message.make_query(self.service.name, dns.rdatatype.A)
        try:
            response = await dns.asyncquery.udp(query, host, timeout=DNS_TIMEOUT, port=port)
        except (dns.exception.DNSException, OSError) as err:
            raise LookupFailed(_reason(err)) from None
        if response.rcode() != dns.rcode.NOERROR:
            raise LookupFailed(dns.rcode.to_text(response.rcode()))
        rrset = response.get_rrset(
            response.answer, query.question[0].name, dns.rdataclass.IN, dns.rdatatype.A
        )
        if rrset is None or len(rrset) == 0:
            raise LookupFailed("no address in the answer")
        address = str(next(iter(rrset)))
        if address not in self.service.vips:
            raise LookupFailed(f"{address} is neither VIP")
        vip = self.service.vips.index(address)
        now = self._now()
        self.recorder.lookup(now, self.spec.index, vip)
        cache = self.spec.cache if self.spec.cache is not None else rrset.ttl
        self._answer, self._cache_until = (address, vip), now + cache
        return self._answer

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


def _reason(err: BaseException) -> str:
    """A short, bounded description of an error (its kind, for the error counts)."""
    if isinstance(err, TimeoutError):
        return "timeout"
    if isinstance(err, asyncio.IncompleteReadError):
        return "connection ended mid-response"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror.lower()
    return type(err).__name__
