# The client fleet of a scenario, as plain data: each client's request rate, DNS cache,
# source address and phase. Pure and deterministic for a given seed, so every policy of a run
# drives the very same fleet and their results can be compared client for client.
#
# Rules:
# - Rates are spread evenly (client i gets rates[i % len(rates)]); within each rate the DNS
#   cache mix is applied by largest remainder, so every (rate, cache) class holds its share.
# - Each client has its own source address in 127.1.0.0/16: migproxy's returning-client
#   back-off keys on the client address, and clients sharing 127.0.0.1 would look like one
#   client coming straight back after every close.
from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from migproxy.lab.scenario import CacheShare, Scenario

SOURCE_NET = "127.1"  # clients connect from 127.1.x.y, y in 1..250


@dataclass(frozen=True, slots=True)
class ClientSpec:
    """One keep-alive client of the fleet."""

    index: int
    rate: float  # requests per second, evenly spaced
    cache: float | None  # seconds a DNS answer is reused; None: the answer's TTL
    source: str  # the address it connects from
    phase: float  # its first request is this many seconds after the fleet's start

    @property
    def klass(self) -> tuple[float, float | None]:
        """The (rate, cache) class it belongs to."""
        return (self.rate, self.cache)


def source_address(index: int) -> str:
    """The source address of client `index` (0-based): 127.1.0.1, 127.1.0.2, ..."""
    return f"{SOURCE_NET}.{index // 250}.{index % 250 + 1}"


def cache_label(cache: float | None) -> str:
    """How a DNS cache is shown in tables: "0 s", "60 s", "TTL"."""
    return "TTL" if cache is None else f"{cache:g} s"


def split(count: int, shares: Sequence[float]) -> list[int]:
    """`count` items split by `shares` (adding up to 1), by largest remainder: the counts add
    up to `count` and each is within 1 of count x share."""
    exact = [count * share for share in shares]
    counts = [math.floor(value) for value in exact]
    by_remainder = sorted(range(len(shares)), key=lambda i: counts[i] - exact[i])
    for i in by_remainder[: count - sum(counts)]:
        counts[i] += 1
    return counts


def _caches(count: int, mix: Sequence[CacheShare]) -> list[float | None]:
    caches: list[float | None] = []
    for entry, n in zip(mix, split(count, [entry.share for entry in mix]), strict=True):
        caches += [entry.seconds] * n
    return caches


def build_fleet(scenario: Scenario) -> tuple[ClientSpec, ...]:
    """The fleet of `scenario`: `clients` specs, the same for every policy."""
    rng = random.Random(scenario.seed)
    per_rate: list[list[int]] = [[] for _ in scenario.rates]
    for index in range(scenario.clients):
        per_rate[index % len(scenario.rates)].append(index)
    cache_of: dict[int, float | None] = {}
    for indexes in per_rate:
        for index, cache in zip(indexes, _caches(len(indexes), scenario.dns_cache), strict=True):
            cache_of[index] = cache
    specs = []
    for index in range(scenario.clients):
        rate = scenario.rates[index % len(scenario.rates)]
        # A random phase within the first request interval (at most 1 s): the fleet does not
        # fire in lockstep, and all of it is connected within the first second.
        phase = rng.uniform(0.0, min(1.0, 1.0 / rate))
        specs.append(ClientSpec(index, rate, cache_of[index], source_address(index), phase))
    return tuple(specs)


def classes(specs: Sequence[ClientSpec]) -> list[tuple[float, float | None]]:
    """The fleet's (rate, cache) classes, in a stable order: by cache, then by rate."""
    found = {spec.klass for spec in specs}
    return sorted(found, key=lambda k: (math.inf if k[1] is None else k[1], k[0]))
