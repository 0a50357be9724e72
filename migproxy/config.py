# Configuration: read the TOML file, validate every key, return typed and frozen settings.
from __future__ import annotations

import errno
import ipaddress
import os
import stat
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, fields, replace
from typing import Any

# Address and Epoch are config types too: `from migproxy.config import Address` keeps working.
from migproxy.config_values import Address as Address
from migproxy.config_values import Epoch as Epoch
from migproxy.config_values import (
    dns_name_or_empty,
    epoch_time,
    host_list,
    host_or_empty,
    host_port,
    host_port_or_off,
    http_path,
    ip_list,
    label_value,
    name_servers,
    network_list,
    path_prefix_list,
    token,
    worker_count,
)
from migproxy.values import (
    Validator,
    boolean,
    fraction,
    int_between,
    integer,
    non_negative,
    number,
    one_of,
    positive,
    show,
)

FORWARDED_MODES = ("x-forwarded", "forwarded", "none")
LOG_LEVELS = ("debug", "info", "warning", "error")
BALANCE_MODES = ("least_outstanding", "round_robin")
HEALTH_CHECKS = ("http", "tcp")
ALL_DOWN_MODES = ("fail_open", "reject")


class ConfigError(Exception):
    """A configuration problem; str() is exactly "FILE: key: reason"."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        super().__init__(f"{source}: {key}: {reason}")
        self.source = source
        self.key = key
        self.reason = reason

    def __reduce__(self) -> tuple[type[ConfigError], tuple[str, str, str]]:
        return (type(self), (self.source, self.key, self.reason))


@dataclass(frozen=True, slots=True)
class TcpKeepaliveConfig:
    """TCP keep-alive probing of idle connections (SO_KEEPALIVE and the TCP_KEEP* options)."""

    enabled: bool = False
    idle: int = 60  # seconds of silence before the first probe (TCP_KEEPIDLE)
    interval: int = 10  # seconds between unanswered probes (TCP_KEEPINTVL)
    count: int = 6  # unanswered probes before the connection is dropped (TCP_KEEPCNT)
    user_timeout: float = 0.0  # TCP_USER_TIMEOUT in seconds; 0 keeps the kernel's default

    def detection_seconds(self) -> int:
        """Longest time a silently vanished peer goes unnoticed on an idle connection."""
        return self.idle + self.interval * self.count


# Upstream sockets probe by default: the kernel's own defaults (7200 s + 9 x 75 s) would keep
# a pooled connection to a vanished backend for more than two hours.
UPSTREAM_TCP_KEEPALIVE = TcpKeepaliveConfig(enabled=True, idle=30, interval=5, count=3)


@dataclass(frozen=True, slots=True)
class ListenConfig:
    address: Address
    backlog: int = 1024
    accept_queues: int = 4
    tcp_keepalive: TcpKeepaliveConfig = TcpKeepaliveConfig()


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """Active health checks of every upstream address."""

    enabled: bool = False
    check: str = "http"  # "http": GET `path`, healthy on 2xx/3xx; "tcp": a connect succeeds
    path: str = "/"
    host: str = ""  # Host header of the check; "" sends the upstream address's host
    interval: float = 2.0
    timeout: float = 1.0
    rise: int = 2  # consecutive successes that readmit an ejected address
    fall: int = 3  # consecutive failures that eject an address
    all_down: str = "fail_open"  # every address ejected: "fail_open" uses them all, "reject" 503s


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    address: Address
    connect_timeout: float = 5.0
    response_timeout: float = 60.0
    max_idle: int = 1024  # per address; below the peak concurrency it churns connections
    idle_timeout: float = 50.0
    max_age: float = 0.0  # seconds a connection may live, 0 = no limit
    balance: str = "least_outstanding"
    nameservers: tuple[Address, ...] = ()  # () = the system's (/etc/resolv.conf)
    min_ttl: float = 1.0
    max_ttl: float = 300.0
    stale_ttl: float = 300.0
    tcp_keepalive: TcpKeepaliveConfig = UPSTREAM_TCP_KEEPALIVE
    health: HealthConfig = HealthConfig()


@dataclass(frozen=True, slots=True)
class ScopeConfig:
    """Which requests the injection policies apply to; an empty list does not restrict."""

    hosts: tuple[str, ...] = ()  # Host header values (case-insensitive, port ignored)
    paths: tuple[str, ...] = ()  # path prefixes
    clients: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()  # client networks


@dataclass(frozen=True, slots=True)
class CloseConfig:
    ratio: float = 0.0
    seed: int | None = None
    linger: float = 2.0
    linger_max: float | None = None  # a linger kept going by input lasts at most this
    max_age: float = 0.0  # seconds a client connection may live, 0 = no limit
    max_age_jitter: float = 0.0
    max_requests: int = 0  # requests per client connection, 0 = no limit
    epoch_ratio: float = 1.0  # chance that a stale connection is closed at its next response
    idle_timeout: float = 0.0  # close idle client connections sooner; 0 = limits.keepalive_timeout
    max_closes_per_second: float = 0.0  # 0 = no budget
    max_closes_per_client_per_minute: int = 0  # 0 = no limit
    ramp_seconds: float = 0.0
    returning_window: float = 5.0
    returning_max_backoff: float = 60.0
    dry_run: bool = False
    scope: ScopeConfig = ScopeConfig()


@dataclass(frozen=True, slots=True)
class MigrationConfig:
    epoch: Epoch = Epoch()
    # A new epoch starts by itself when the share of watch_name's DNS answers that point at
    # vip_addresses (this VIP) changes by share_change or more ("" = no watching).
    watch_name: str = ""
    vip_addresses: tuple[str, ...] = ()
    nameservers: tuple[Address, ...] = ()  # () = the system's
    sample_interval: float = 5.0  # seconds between two samples of the answer share
    samples: int = 20  # DNS queries per sample
    share_change: float = 0.05
    start_after_ttl: bool = False  # hold epoch closes until the epoch + the name's TTL


@dataclass(frozen=True, slots=True)
class DrainConfig:
    delay: float = 0.0  # /readyz fails this long before the proxy stops accepting
    idle_grace: float = 1.0  # while draining, connections idle this long are closed
    timeout: float = 30.0  # exit after this even if connections remain


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    max_header_bytes: int = 65536
    max_headers: int = 100
    max_body_bytes: int = 0  # 0: no limit
    head_timeout: float = 10.0
    keepalive_timeout: float = 75.0
    body_timeout: float = 60.0


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    forwarded: str = "x-forwarded"
    via: bool = False


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "info"
    access_log: bool = False


@dataclass(frozen=True, slots=True)
class ServerConfig:
    workers: int = 1  # worker processes; the config's "auto" is one per CPU


@dataclass(frozen=True, slots=True)
class AdminConfig:
    address: Address | None = Address("127.0.0.1", 9105)  # None: no admin endpoint
    token: str = ""  # required as a bearer token by state-changing endpoints when set


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    vip: str = "default"  # the `vip` label on every series


@dataclass(frozen=True, slots=True)
class Config:
    listen: ListenConfig
    upstream: UpstreamConfig
    close: CloseConfig = CloseConfig()
    limits: LimitsConfig = LimitsConfig()
    proxy: ProxyConfig = ProxyConfig()
    log: LogConfig = LogConfig()
    admin: AdminConfig = AdminConfig()
    metrics: MetricsConfig = MetricsConfig()
    migration: MigrationConfig = MigrationConfig()
    drain: DrainConfig = DrainConfig()
    server: ServerConfig = ServerConfig()
    source: str = "<config>"


# Kernel limits of the TCP keep-alive options (include/net/tcp.h): seconds and probes.
_KEEPALIVE_VALIDATORS: dict[str, Validator] = {
    "enabled": boolean,
    "idle": int_between(1, 32767),
    "interval": int_between(1, 32767),
    "count": int_between(1, 127),
    "user_timeout": number("a number of seconds from 0 to 2147483", lambda n: 0 <= n <= 2147483),
}


def _check_keepalive(section: TcpKeepaliveConfig) -> tuple[str, str] | None:
    if 0 < section.user_timeout < section.interval * section.count:
        # The kernel would drop the connection before the last probe is even sent.
        return "user_timeout", "must be 0 or at least interval x count seconds"
    return None


def _check_upstream(section: UpstreamConfig) -> tuple[str, str] | None:
    if section.min_ttl > section.max_ttl:
        return "min_ttl", "must not be greater than max_ttl"
    return None


def _check_health(section: HealthConfig) -> tuple[str, str] | None:
    if section.timeout > section.interval:
        return "timeout", "must not be greater than interval (checks would overlap)"
    return None


def _check_close(section: CloseConfig) -> tuple[str, str] | None:
    if section.max_age_jitter and not section.max_age:
        return "max_age_jitter", "needs max_age"
    if section.linger_max is not None and section.linger_max < section.linger:
        return "linger_max", f"must not be less than linger ({section.linger:g})"
    return None


def _check_migration(section: MigrationConfig) -> tuple[str, str] | None:
    if section.watch_name and not section.vip_addresses:
        return "vip_addresses", "required with watch_name (the addresses of this VIP)"
    if section.start_after_ttl and not section.watch_name:
        return "start_after_ttl", "needs watch_name (whose TTL it waits for)"
    return None


# One entry per section: the dataclass it builds, one validator per key, and a check of the
# keys together. Defaults, and which keys are required (no default), come from the dataclass
# itself; a nested table such as [upstream.health] is a key of its parent whose name joined
# with the parent's ("upstream.health") has an entry of its own.
Check = Callable[[Any], "tuple[str, str] | None"]
_SECTIONS: dict[str, tuple[type[Any], dict[str, Validator], Check | None]] = {
    "listen": (
        ListenConfig,
        {
            "address": host_port,
            "backlog": int_between(1, 65535),
            "accept_queues": int_between(1, 64),
        },
        None,
    ),
    "listen.tcp_keepalive": (TcpKeepaliveConfig, _KEEPALIVE_VALIDATORS, _check_keepalive),
    "upstream": (
        UpstreamConfig,
        {
            "address": host_port,
            "connect_timeout": positive,
            "response_timeout": positive,
            "max_idle": int_between(0, 100_000),
            "idle_timeout": positive,
            "max_age": non_negative,
            "balance": one_of(BALANCE_MODES),
            "nameservers": name_servers,
            "min_ttl": non_negative,
            "max_ttl": positive,
            "stale_ttl": non_negative,
        },
        _check_upstream,
    ),
    "upstream.tcp_keepalive": (TcpKeepaliveConfig, _KEEPALIVE_VALIDATORS, _check_keepalive),
    "upstream.health": (
        HealthConfig,
        {
            "enabled": boolean,
            "check": one_of(HEALTH_CHECKS),
            "path": http_path,
            "host": host_or_empty,
            "interval": positive,
            "timeout": positive,
            "rise": int_between(1, 100),
            "fall": int_between(1, 100),
            "all_down": one_of(ALL_DOWN_MODES),
        },
        _check_health,
    ),
    "close": (
        CloseConfig,
        {
            "ratio": fraction,
            "seed": integer,
            "linger": non_negative,
            "linger_max": non_negative,
            "max_age": non_negative,
            "max_age_jitter": non_negative,
            "max_requests": int_between(0, 2**31),
            "epoch_ratio": fraction,
            "idle_timeout": non_negative,
            "max_closes_per_second": non_negative,
            "max_closes_per_client_per_minute": int_between(0, 1_000_000),
            "ramp_seconds": non_negative,
            "returning_window": non_negative,
            "returning_max_backoff": non_negative,
            "dry_run": boolean,
        },
        _check_close,
    ),
    "close.scope": (
        ScopeConfig,
        {"hosts": host_list, "paths": path_prefix_list, "clients": network_list},
        None,
    ),
    "migration": (
        MigrationConfig,
        {
            "epoch": epoch_time,
            "watch_name": dns_name_or_empty,
            "vip_addresses": ip_list,
            "nameservers": name_servers,
            "sample_interval": positive,
            "samples": int_between(1, 1000),
            "share_change": number("a number between 0.01 and 1.0", lambda n: 0.01 <= n <= 1.0),
            "start_after_ttl": boolean,
        },
        _check_migration,
    ),
    "server": (ServerConfig, {"workers": worker_count}, None),
    "drain": (
        DrainConfig,
        {"delay": non_negative, "idle_grace": non_negative, "timeout": positive},
        None,
    ),
    "limits": (
        LimitsConfig,
        {
            "max_header_bytes": int_between(1024, 16 * 1024 * 1024),
            "max_headers": int_between(1, 10_000),
            "max_body_bytes": int_between(0, 2**62),
            "head_timeout": positive,
            "keepalive_timeout": positive,
            "body_timeout": positive,
        },
        None,
    ),
    "proxy": (ProxyConfig, {"forwarded": one_of(FORWARDED_MODES), "via": boolean}, None),
    "log": (LogConfig, {"level": one_of(LOG_LEVELS), "access_log": boolean}, None),
    "admin": (AdminConfig, {"address": host_port_or_off, "token": token}, None),
    "metrics": (MetricsConfig, {"vip": label_value}, None),
}
_TOP_LEVEL = tuple(name for name in _SECTIONS if "." not in name)


def _parse_section(source: str, name: str, raw: object, base: Any = None) -> Any:
    """Build section `name` from its TOML table; `base` gives the defaults of a nested one."""
    cls, validators, check = _SECTIONS[name]
    if not isinstance(raw, Mapping):
        raise ConfigError(source, name, f"must be a table, got {show(raw)}")
    nested = {f.name for f in fields(cls) if f"{name}.{f.name}" in _SECTIONS}
    for key in raw:
        if key not in validators and key not in nested:
            raise ConfigError(source, f"{name}.{key}", "unknown key")
    required = {f.name for f in fields(cls) if f.default is MISSING}
    values: dict[str, Any] = {}
    for key, validate in validators.items():
        if key in raw:
            try:
                values[key] = validate(raw[key])
            except ValueError as err:
                raise ConfigError(source, f"{name}.{key}", str(err)) from None
        elif key in required:
            raise ConfigError(source, f"{name}.{key}", "required")
    for field in fields(cls):
        if field.name in nested:
            default = field.default if base is None else getattr(base, field.name)
            values[field.name] = _parse_section(
                source, f"{name}.{field.name}", raw.get(field.name, {}), default
            )
    section = cls(**values) if base is None else replace(base, **values)
    problem = check(section) if check is not None else None
    if problem is not None:
        raise ConfigError(source, f"{name}.{problem[0]}", problem[1])
    return section


def parse_config(data: Mapping[str, object], source: str) -> Config:
    """Validate already-parsed TOML data; raise ConfigError at the first problem."""
    for name in data:
        if name not in _TOP_LEVEL:
            raise ConfigError(source, str(name), "unknown section")
    sections = {name: _parse_section(source, name, data.get(name, {})) for name in _TOP_LEVEL}
    return Config(**sections, source=source)


def read_regular_file(path: str | os.PathLike[str]) -> bytes:
    """The content of a regular file. Anything else is refused (OSError) without waiting:
    the event loop reads config files, and a FIFO put in their place would block it."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with open(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        return file.read()


def read_config_file(path: str | os.PathLike[str], *, regular_only: bool = True) -> bytes:
    """The content of a config file; ConfigError if it cannot be read. `regular_only=False`
    (before the event loop runs: `migproxy check --config /dev/stdin`) reads a pipe too."""
    try:
        if not regular_only:
            with open(path, "rb") as file:
                return file.read()
        return read_regular_file(path)
    except OSError as err:
        raise ConfigError(os.fspath(path), "-", f"cannot read file: {err.strerror or err}") from err


def load_config(path: str | os.PathLike[str], content: bytes | None = None) -> Config:
    """Read and validate a TOML config file (or `content`, read from it before); every failure
    is a ConfigError."""
    source = os.fspath(path)
    if content is None:
        content = read_config_file(source)
    try:
        data = tomllib.loads(content.decode())
    except UnicodeDecodeError as err:
        raise ConfigError(source, "-", f"not valid UTF-8: {err.reason}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(source, "-", f"invalid TOML: {err}") from err
    return parse_config(data, source)
