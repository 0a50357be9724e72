# Lab scenarios: a TOML file (config/lab/*.toml) read into frozen dataclasses, every key
# validated, every problem reported as migproxy's own config errors are: `FILE: key: reason`.
#
# Rules:
# - Pure: reads a file in load_scenario() and nothing else; no sockets, no clock.
# - A policy's [close] keys are validated by migproxy's own config parser, so the lab accepts
#   exactly what a proxy would and reports a bad key the way `migproxy check` does, under the
#   policy's own key ("policy[2].close.ratio: ...").
# - Weights are a schedule of (seconds from the start, old weight, new weight); the first
#   entry, at 0, is the split the fleet starts on, and every later one is a "step".
from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migproxy.config import ConfigError, parse_config

# Keys the lab writes into every proxy's config itself; a policy may not set them.
LAB_CLOSE_KEYS = frozenset({"seed"})
POLICY_STARTS = ("step", "start")
MAX_CLIENTS = 5000  # source addresses 127.1.x.y, and far more than one process can drive
MAX_NAME = 24  # a policy name is a column heading of the live progress


@dataclass(frozen=True, slots=True)
class Step:
    """One entry of the weight schedule: from `at` seconds on, the GSLB answers the old VIP
    with weight `old` and the new one with weight `new`."""

    at: float
    old: float
    new: float

    @property
    def old_share(self) -> float:
        """The share of DNS answers that point at the old VIP (the traffic target)."""
        return self.old / (self.old + self.new)


@dataclass(frozen=True, slots=True)
class CacheShare:
    """A share of the fleet whose clients cache a DNS answer for `seconds` (None: for the
    answer's TTL, as a caching system resolver does; curl, aiohttp and the JVM ignore it)."""

    seconds: float | None
    share: float


@dataclass(frozen=True, slots=True)
class Policy:
    """One way of running the migration, compared with the others.

    Attributes:
        name: its label in the progress, the report and the plot.
        close: [close] keys for both proxies, as TOML values (validated); {} injects nothing.
        epoch: at each step, POST /migration/epoch on the proxy of each VIP whose weight share
            fell, so that its connections opened before the step are stale.
        start: "step": the proxies run without [close] keys until the first step, when the
            file is rewritten and reloaded (the runbook: deploy with nothing, then close);
            "start": the keys are in force from the start.
    """

    name: str
    close: Mapping[str, object]
    epoch: bool = False
    start: str = "step"

    @property
    def ratio(self) -> float:
        value = self.close.get("ratio", 0.0)
        return float(value) if isinstance(value, int | float) else 0.0

    @property
    def injects(self) -> bool:
        """Whether any close is injected (a ratio, an epoch or a per-connection limit)."""
        limits = ("ratio", "max_age", "max_requests")
        return self.epoch or any(self.close.get(key, 0) not in (0, 0.0) for key in limits)


@dataclass(frozen=True, slots=True)
class Scenario:
    """A whole lab run: the schedule, the fleet and the policies to compare."""

    source: str
    duration: int  # seconds measured from the fleet's start
    ttl: int  # TTL of the GSLB's answers, seconds
    seed: int
    concurrent: bool  # every policy at once (own ports, DNS server and proxies) or in turn
    weights: tuple[Step, ...]
    clients: int
    rates: tuple[float, ...]  # requests per second; clients are spread evenly over them
    dns_cache: tuple[CacheShare, ...]
    policies: tuple[Policy, ...]
    epsilon: float = 0.01  # converged: traffic share within max(epsilon, 2 sigma) of target
    window: int = 5  # seconds of the centered moving window the traffic share is taken over
    hold: int = 5  # seconds the windowed share must stay within tolerance to count

    @property
    def steps(self) -> tuple[Step, ...]:
        """The weight changes (every schedule entry after the initial one)."""
        return self.weights[1:]


class _Keys:
    """Reads one TOML table, raising ConfigError(source, "prefix.key", reason)."""

    def __init__(self, source: str, prefix: str, table: object, allowed: tuple[str, ...]):
        self.source, self.prefix = source, prefix
        if not isinstance(table, Mapping):
            raise ConfigError(source, prefix or "-", "must be a table")
        for key in table:
            if key not in allowed:
                raise ConfigError(source, self.key(str(key)), "unknown key")
        self.table: Mapping[str, object] = table

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def fail(self, name: str, reason: str) -> ConfigError:
        return ConfigError(self.source, self.key(name), reason)

    def get(self, name: str, check: Callable[[object], Any], default: object = None) -> Any:
        if name not in self.table:
            if default is None:
                raise self.fail(name, "required")
            return default
        try:
            return check(self.table[name])
        except ValueError as err:
            raise self.fail(name, str(err)) from None


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"must be a number, got {value!r}")
    return float(value)


def _between(low: float, high: float, integer: bool = False) -> Callable[[object], Any]:
    kind = "an integer" if integer else "a number"

    def check(value: object) -> float | int:
        if integer and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"must be {kind} between {low:g} and {high:g}, got {value!r}")
        number = _number(value)
        if not low <= number <= high:
            raise ValueError(f"must be {kind} between {low:g} and {high:g}, got {value!r}")
        return int(number) if integer else number

    return check


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")
    return value


def _weights(value: object) -> tuple[Step, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError("must be a non-empty array of [seconds, old weight, new weight]")
    steps: list[Step] = []
    for i, entry in enumerate(value):
        if not isinstance(entry, list) or len(entry) != 3:
            raise ValueError(f"entry {i}: must be [seconds, old weight, new weight]")
        try:
            at, old, new = (_number(item) for item in entry)
        except ValueError as err:
            raise ValueError(f"entry {i}: {err}") from None
        if old < 0 or new < 0 or old + new <= 0:
            raise ValueError(f"entry {i}: weights must be >= 0, not both 0")
        if i == 0 and at != 0:
            raise ValueError("the first entry must be at 0 s (the split the fleet starts on)")
        if at != int(at):
            raise ValueError(f"entry {i}: times must be whole seconds (the lab counts per second)")
        if i > 0 and at <= steps[-1].at:
            raise ValueError(f"entry {i}: times must increase ({at:g} after {steps[-1].at:g})")
        steps.append(Step(at, old, new))
    return tuple(steps)


def _rates(value: object) -> tuple[float, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError("must be a non-empty array of requests per second")
    rates = tuple(_number(item) for item in value)
    if any(not 0.05 <= rate <= 200 for rate in rates):
        raise ValueError("each rate must be between 0.05 and 200 requests per second")
    return rates


def _cache_mix(value: object) -> tuple[CacheShare, ...]:
    expected = 'must be an array of [seconds or "ttl", share], shares adding up to 1'
    if not isinstance(value, list) or not value:
        raise ValueError(expected)
    mix = []
    for entry in value:
        if not isinstance(entry, list) or len(entry) != 2:
            raise ValueError(expected)
        seconds, share = entry
        cache = None if seconds == "ttl" else _between(0, 3600)(seconds)
        mix.append(CacheShare(cache, _between(0, 1)(share)))
    if abs(sum(entry.share for entry in mix) - 1.0) > 1e-6:
        raise ValueError(expected)
    return tuple(mix)


def _policy(source: str, index: int, table: object, names: set[str]) -> Policy:
    keys = _Keys(source, f"policy[{index}]", table, ("name", "close", "epoch", "start"))

    def name(value: object) -> str:
        if not isinstance(value, str) or not 0 < len(value) <= MAX_NAME:
            raise ValueError(f"must be a string of 1 to {MAX_NAME} characters")
        if value in names:
            raise ValueError(f"{value!r} is the name of an earlier policy")
        return value

    def start(value: object) -> str:
        if value not in POLICY_STARTS:
            raise ValueError(f'must be "step" or "start", got {value!r}')
        return str(value)

    policy = Policy(
        name=keys.get("name", name),
        close=keys.get("close", lambda v: _close_keys(source, keys.key("close"), v), {}),
        epoch=keys.get("epoch", _boolean, False),
        start=keys.get("start", start, "step"),
    )
    names.add(policy.name)
    return policy


def _close_keys(source: str, prefix: str, value: object) -> Mapping[str, object]:
    """Validate [close] keys with migproxy's own parser; errors name the policy's key."""
    if not isinstance(value, Mapping):
        raise ValueError("must be a table of [close] keys")
    for key in value:
        if key in LAB_CLOSE_KEYS:
            raise ConfigError(source, f"{prefix}.{key}", "set by the lab itself")
    document = {
        "listen": {"address": "127.0.0.1:1"},
        "upstream": {"address": "127.0.0.1:1"},
        "close": dict(value),
    }
    try:
        parse_config(document, source)
    except ConfigError as err:
        key = err.key.removeprefix("close.")
        raise ConfigError(source, f"{prefix}.{key}", err.reason) from None
    return dict(value)


TOP_KEYS = ("duration", "ttl", "seed", "concurrent", "weights", "clients", "convergence")


def parse_scenario(data: Mapping[str, object], source: str) -> Scenario:
    """Validate already-parsed TOML; raise ConfigError at the first problem."""
    top = _Keys(source, "", data, (*TOP_KEYS, "policy"))
    duration = top.get("duration", _between(5, 86400, integer=True))
    weights = top.get("weights", _weights)
    if weights[-1].at >= duration:
        raise top.fail("weights", f"every step must come before the end ({duration:g} s)")
    clients = _Keys(source, "clients", data.get("clients", {}), ("count", "rates", "dns_cache"))
    convergence = _Keys(
        source, "convergence", data.get("convergence", {}), ("epsilon", "window", "hold")
    )
    raw_policies = data.get("policy")
    if not isinstance(raw_policies, list) or not raw_policies:
        raise ConfigError(source, "policy", "at least one [[policy]] table is required")
    names: set[str] = set()
    return Scenario(
        source=source,
        duration=duration,
        ttl=top.get("ttl", _between(0, 86400, integer=True), 5),
        seed=top.get("seed", _between(0, 2**31, integer=True), 1),
        concurrent=top.get("concurrent", _boolean, True),
        weights=weights,
        clients=clients.get("count", _between(1, MAX_CLIENTS, integer=True)),
        rates=clients.get("rates", _rates),
        dns_cache=clients.get("dns_cache", _cache_mix, (CacheShare(0.0, 1.0),)),
        policies=tuple(_policy(source, i, p, names) for i, p in enumerate(raw_policies)),
        epsilon=convergence.get("epsilon", _between(0.001, 0.5), 0.01),
        window=convergence.get("window", _between(1, 60, integer=True), 5),
        hold=convergence.get("hold", _between(1, 600, integer=True), 5),
    )


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; every failure is a ConfigError."""
    source = str(path)
    try:
        with open(source, "rb") as file:
            data = tomllib.load(file)
    except OSError as err:
        raise ConfigError(source, "-", f"cannot read file: {err.strerror or err}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(source, "-", f"invalid TOML: {err}") from err
    return parse_scenario(data, source)
