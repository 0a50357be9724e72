# Configuration: read the TOML file, validate every key, return typed and frozen settings.
from __future__ import annotations

import ipaddress
import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any, TypeGuard

FORWARDED_MODES = ("x-forwarded", "forwarded", "none")
LOG_LEVELS = ("debug", "info", "warning", "error")


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
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ListenConfig:
    address: Address
    backlog: int = 1024
    accept_queues: int = 4


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    address: Address
    connect_timeout: float = 5.0
    response_timeout: float = 60.0
    max_idle: int = 256
    idle_timeout: float = 50.0


@dataclass(frozen=True, slots=True)
class CloseConfig:
    ratio: float = 0.0
    seed: int | None = None
    linger: float = 2.0


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    max_header_bytes: int = 65536
    max_headers: int = 100
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
    source: str = "<config>"


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


# Validators: take the raw TOML value, return the typed value or raise ValueError(reason).
Validator = Callable[[object], Any]


def _show(value: object) -> str:
    """Render a received value the way it would be spelled in TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return f"a {type(value).__name__}"


def _wrong(expected: str, value: object) -> ValueError:
    return ValueError(f"must be {expected}, got {_show(value)}")


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _as_float(value: object) -> float | None:
    """The value as a finite float if it is a TOML integer or float, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _int_between(low: int, high: int) -> Validator:
    def check(value: object) -> int:
        if _is_int(value) and low <= value <= high:
            return value
        raise _wrong(f"an integer between {low} and {high}", value)

    return check


def _integer(value: object) -> int:
    if _is_int(value):
        return value
    raise _wrong("an integer", value)


def _number(expected: str, accept: Callable[[float], bool]) -> Validator:
    def check(value: object) -> float:
        number = _as_float(value)
        if number is not None and accept(number):
            return number
        raise _wrong(expected, value)

    return check


_fraction = _number("a number between 0.0 and 1.0", lambda n: 0.0 <= n <= 1.0)
_positive = _number("a finite number greater than 0", lambda n: n > 0)
_non_negative = _number("a finite number >= 0", lambda n: n >= 0)


def _boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    raise _wrong("true or false", value)


def _one_of(choices: tuple[str, ...]) -> Validator:
    expected = "one of " + ", ".join(json.dumps(choice) for choice in choices)

    def check(value: object) -> str:
        if isinstance(value, str) and value in choices:
            return value
        raise _wrong(expected, value)

    return check


def _address(value: object) -> Address:
    if not isinstance(value, str):
        raise _wrong('a "host:port" string', value)
    try:
        return parse_address(value)
    except ValueError as err:
        raise _wrong(f'"host:port" or "[ipv6]:port" ({err})', value) from None


def _address_or_off(value: object) -> Address | None:
    if value == "":
        return None
    return _address(value)


_LABEL_VALUE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")


def _label_value(value: object) -> str:
    if isinstance(value, str) and _LABEL_VALUE.fullmatch(value):
        return value
    raise _wrong("1 to 32 of a-z, 0-9, '_', '.', '-' (starting with a letter or digit)", value)


def _token(value: object) -> str:
    if isinstance(value, str) and value.isprintable() and " " not in value:
        return value
    raise _wrong("a string of printable characters without spaces", value)


# One entry per section: the dataclass it builds and one validator per key. Defaults, and
# which keys are required (no default), come from the dataclass itself.
_SECTIONS: dict[str, tuple[type[Any], dict[str, Validator]]] = {
    "listen": (
        ListenConfig,
        {
            "address": _address,
            "backlog": _int_between(1, 65535),
            "accept_queues": _int_between(1, 64),
        },
    ),
    "upstream": (
        UpstreamConfig,
        {
            "address": _address,
            "connect_timeout": _positive,
            "response_timeout": _positive,
            "max_idle": _int_between(0, 100_000),
            "idle_timeout": _positive,
        },
    ),
    "close": (CloseConfig, {"ratio": _fraction, "seed": _integer, "linger": _non_negative}),
    "limits": (
        LimitsConfig,
        {
            "max_header_bytes": _int_between(1024, 16 * 1024 * 1024),
            "max_headers": _int_between(1, 10_000),
            "head_timeout": _positive,
            "keepalive_timeout": _positive,
            "body_timeout": _positive,
        },
    ),
    "proxy": (ProxyConfig, {"forwarded": _one_of(FORWARDED_MODES), "via": _boolean}),
    "log": (LogConfig, {"level": _one_of(LOG_LEVELS), "access_log": _boolean}),
    "admin": (AdminConfig, {"address": _address_or_off, "token": _token}),
    "metrics": (MetricsConfig, {"vip": _label_value}),
}


def _parse_section(source: str, name: str, raw: object) -> Any:
    cls, validators = _SECTIONS[name]
    if not isinstance(raw, Mapping):
        raise ConfigError(source, name, f"must be a table, got {_show(raw)}")
    for key in raw:
        if key not in validators:
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
    return cls(**values)


def parse_config(data: Mapping[str, object], source: str) -> Config:
    """Validate already-parsed TOML data; raise ConfigError at the first problem."""
    for name in data:
        if name not in _SECTIONS:
            raise ConfigError(source, str(name), "unknown section")
    sections = {name: _parse_section(source, name, data.get(name, {})) for name in _SECTIONS}
    return Config(**sections, source=source)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a TOML config file; every failure is a ConfigError."""
    source = os.fspath(path)
    try:
        with open(source, "rb") as file:
            data = tomllib.load(file)
    except OSError as err:
        raise ConfigError(source, "-", f"cannot read file: {err.strerror or err}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(source, "-", f"not valid UTF-8: {err.reason}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(source, "-", f"invalid TOML: {err}") from err
    return parse_config(data, source)
