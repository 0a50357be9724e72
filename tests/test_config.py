from __future__ import annotations

import dataclasses
import ipaddress
import os
import pickle
import time
import tomllib
from pathlib import Path

import pytest

from migproxy.config import (
    Address,
    CloseConfig,
    Config,
    ConfigError,
    DrainConfig,
    Epoch,
    HealthConfig,
    LimitsConfig,
    ListenConfig,
    LogConfig,
    MigrationConfig,
    ProxyConfig,
    ScopeConfig,
    TcpKeepaliveConfig,
    UpstreamConfig,
    load_config,
    parse_config,
)
from migproxy.config_values import parse_address

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "migproxy.example.toml"
LISTEN = '[listen]\naddress = "127.0.0.1:8080"\n'
UPSTREAM = '[upstream]\naddress = "127.0.0.1:8081"\n'
BASE = LISTEN + UPSTREAM
ADDRESS_FORMS = '"host:port" or "[ipv6]:port"'
SECTIONS = {
    "listen": ListenConfig,
    "upstream": UpstreamConfig,
    "close": CloseConfig,
    "limits": LimitsConfig,
    "proxy": ProxyConfig,
    "log": LogConfig,
    "listen.tcp_keepalive": TcpKeepaliveConfig,
    "upstream.tcp_keepalive": TcpKeepaliveConfig,
    "upstream.health": HealthConfig,
    "close.scope": ScopeConfig,
    "migration": MigrationConfig,
    "drain": DrainConfig,
}


def parse(text: str) -> Config:
    return parse_config(tomllib.loads(text), "proxy.toml")


def test_example_file_loads_with_defaults_except_addresses_and_ratio() -> None:
    config = load_config(EXAMPLE)
    assert config == Config(
        listen=ListenConfig(Address("127.0.0.1", 8080)),
        upstream=UpstreamConfig(Address("127.0.0.1", 8081)),
        close=CloseConfig(ratio=0.1),
        source=str(EXAMPLE),
    )


def test_example_file_documents_every_key() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    for unset in ("seed", "linger_max"):  # documented as comments: their default is unset
        text = text.replace(f"\n# {unset} = ", f"\n{unset} = ")
    documented = tomllib.loads(text)
    for section, cls in SECTIONS.items():
        assert f"[{section}]" in text
        table = documented
        for part in section.split("."):
            table = table[part]
        for field in dataclasses.fields(cls):
            assert field.name in table, f"{section}.{field.name}"


def test_defaults() -> None:
    config = parse(BASE)
    assert config.source == "proxy.toml"
    assert config.listen == ListenConfig(
        address=Address("127.0.0.1", 8080), backlog=1024, accept_queues=4
    )
    assert config.upstream == UpstreamConfig(
        address=Address("127.0.0.1", 8081),
        connect_timeout=5.0,
        response_timeout=60.0,
        max_idle=1024,
        idle_timeout=50.0,
    )
    assert config.close == CloseConfig(ratio=0.0, seed=None, linger=2.0)
    assert config.limits == LimitsConfig(
        max_header_bytes=65536,
        max_headers=100,
        head_timeout=10.0,
        keepalive_timeout=75.0,
        body_timeout=60.0,
    )
    assert config.proxy == ProxyConfig(forwarded="x-forwarded", via=False)
    assert config.log == LogConfig(level="info", access_log=False)
    assert Config(config.listen, config.upstream).source == "<config>"


def test_every_key_is_read() -> None:
    config = parse(
        '[listen]\naddress = "[::]:80"\nbacklog = 16\naccept_queues = 2\n'
        '[upstream]\naddress = "backend.internal:9000"\nconnect_timeout = 1\n'
        "response_timeout = 2.5\nmax_idle = 0\nidle_timeout = 3\n"
        "[close]\nratio = 1\nseed = -7\nlinger = 0\n"
        "[limits]\nmax_header_bytes = 1024\nmax_headers = 10000\nmax_body_bytes = 7\n"
        "head_timeout = 4\n"
        "keepalive_timeout = 5\nbody_timeout = 6\n"
        '[proxy]\nforwarded = "none"\nvia = true\n'
        '[log]\nlevel = "debug"\naccess_log = true\n'
    )
    assert config == Config(
        listen=ListenConfig(Address("::", 80), 16, 2),
        upstream=UpstreamConfig(Address("backend.internal", 9000), 1.0, 2.5, 0, 3.0),
        close=CloseConfig(1.0, -7, 0.0),
        limits=LimitsConfig(1024, 10000, 7, 4.0, 5.0, 6.0),
        proxy=ProxyConfig("none", True),
        log=LogConfig("debug", True),
        source="proxy.toml",
    )


def test_integers_become_floats_where_floats_are_wanted() -> None:
    config = parse(BASE + "[close]\nratio = 1\nlinger = 3\n")
    assert type(config.close.ratio) is float
    assert type(config.close.linger) is float


def _bad(text: str, key: str, reason: str, id: str) -> object:
    return pytest.param(text, key, reason, id=id)


BAD_CONFIGS = [
    _bad("", "listen.address", "required", id="empty-file"),
    _bad(UPSTREAM, "listen.address", "required", id="no-listen-section"),
    _bad("[listen]\nbacklog = 5\n" + UPSTREAM, "listen.address", "required", id="no-listen-addr"),
    _bad(LISTEN, "upstream.address", "required", id="no-upstream-section"),
    _bad(BASE + "[bogus]\n", "bogus", "unknown section", id="unknown-section"),
    _bad(BASE + "ratio = 0.5\n", "upstream.ratio", "unknown key", id="key-in-wrong-section"),
    _bad(BASE + "[close]\nratioo = 0.5\n", "close.ratioo", "unknown key", id="unknown-key"),
    _bad(BASE + "close = 5\n", "upstream.close", "unknown key", id="dotted-unknown-key"),
    _bad("close = 5\n" + BASE, "close", "must be a table, got 5", id="section-not-table"),
    _bad(BASE + "[[log]]\n", "log", "must be a table, got an array", id="array-of-tables"),
    _bad(
        BASE + "[close]\nratio = 1.5\n",
        "close.ratio",
        "must be a number between 0.0 and 1.0, got 1.5",
        id="ratio-above-one",
    ),
    _bad(
        BASE + "[close]\nratio = -0.1\n",
        "close.ratio",
        "must be a number between 0.0 and 1.0, got -0.1",
        id="ratio-negative",
    ),
    _bad(
        BASE + '[close]\nratio = "0.5"\n',
        "close.ratio",
        'must be a number between 0.0 and 1.0, got "0.5"',
        id="ratio-string",
    ),
    _bad(
        BASE + "[close]\nratio = nan\n",
        "close.ratio",
        "must be a number between 0.0 and 1.0, got nan",
        id="ratio-nan",
    ),
    _bad(
        BASE + "[close]\nratio = true\n",
        "close.ratio",
        "must be a number between 0.0 and 1.0, got true",
        id="ratio-bool",
    ),
    _bad(BASE + "[close]\nseed = 1.5\n", "close.seed", "must be an integer, got 1.5", id="seed"),
    _bad(
        BASE + "[close]\nseed = false\n",
        "close.seed",
        "must be an integer, got false",
        id="seed-bool",
    ),
    _bad(
        BASE + "[close]\nlinger = -1\n",
        "close.linger",
        "must be a finite number >= 0, got -1",
        id="linger-negative",
    ),
    _bad(
        BASE + "[close]\nlinger = inf\n",
        "close.linger",
        "must be a finite number >= 0, got inf",
        id="linger-inf",
    ),
    _bad(
        BASE + "[close]\nlinger = 5\nlinger_max = 4\n",
        "close.linger_max",
        "must not be less than linger (5)",
        id="linger-max-under-linger",
    ),
    _bad(
        LISTEN + UPSTREAM + "connect_timeout = 0\n",
        "upstream.connect_timeout",
        "must be a finite number greater than 0, got 0",
        id="connect-timeout-zero",
    ),
    _bad(
        BASE + "response_timeout = inf\n",
        "upstream.response_timeout",
        "must be a finite number greater than 0, got inf",
        id="response-timeout-inf",
    ),
    _bad(
        BASE + 'idle_timeout = "30s"\n',
        "upstream.idle_timeout",
        'must be a finite number greater than 0, got "30s"',
        id="idle-timeout-string",
    ),
    _bad(
        BASE + "max_idle = -1\n",
        "upstream.max_idle",
        "must be an integer between 0 and 100000, got -1",
        id="max-idle-negative",
    ),
    _bad(
        BASE + "max_idle = 100001\n",
        "upstream.max_idle",
        "must be an integer between 0 and 100000, got 100001",
        id="max-idle-too-big",
    ),
    _bad(
        BASE + "max_idle = 8.0\n",
        "upstream.max_idle",
        "must be an integer between 0 and 100000, got 8.0",
        id="max-idle-float",
    ),
    _bad(
        LISTEN + "accept_queues = 0\n" + UPSTREAM,
        "listen.accept_queues",
        "must be an integer between 1 and 64, got 0",
        id="accept-queues-zero",
    ),
    _bad(
        LISTEN + "backlog = 0\n" + UPSTREAM,
        "listen.backlog",
        "must be an integer between 1 and 65535, got 0",
        id="backlog-zero",
    ),
    _bad(
        LISTEN + "backlog = 65536\n" + UPSTREAM,
        "listen.backlog",
        "must be an integer between 1 and 65535, got 65536",
        id="backlog-too-big",
    ),
    _bad(
        LISTEN + "backlog = true\n" + UPSTREAM,
        "listen.backlog",
        "must be an integer between 1 and 65535, got true",
        id="backlog-bool",
    ),
    _bad(
        BASE + "[limits]\nmax_header_bytes = 1023\n",
        "limits.max_header_bytes",
        "must be an integer between 1024 and 16777216, got 1023",
        id="max-header-bytes-small",
    ),
    _bad(
        BASE + "[limits]\nmax_header_bytes = 16777217\n",
        "limits.max_header_bytes",
        "must be an integer between 1024 and 16777216, got 16777217",
        id="max-header-bytes-big",
    ),
    _bad(
        BASE + "[limits]\nmax_headers = 0\n",
        "limits.max_headers",
        "must be an integer between 1 and 10000, got 0",
        id="max-headers-zero",
    ),
    _bad(
        BASE + "[limits]\nmax_headers = 10001\n",
        "limits.max_headers",
        "must be an integer between 1 and 10000, got 10001",
        id="max-headers-big",
    ),
    _bad(
        BASE + "[limits]\nmax_body_bytes = -1\n",
        "limits.max_body_bytes",
        "must be an integer between 0 and 4611686018427387904, got -1",
        id="max-body-bytes-negative",
    ),
    _bad(
        BASE + '[limits]\nmax_body_bytes = "1M"\n',
        "limits.max_body_bytes",
        'must be an integer between 0 and 4611686018427387904, got "1M"',
        id="max-body-bytes-string",
    ),
    _bad(
        BASE + "[limits]\nhead_timeout = -1.5\n",
        "limits.head_timeout",
        "must be a finite number greater than 0, got -1.5",
        id="head-timeout-negative",
    ),
    _bad(
        BASE + "[limits]\nkeepalive_timeout = false\n",
        "limits.keepalive_timeout",
        "must be a finite number greater than 0, got false",
        id="keepalive-timeout-bool",
    ),
    _bad(
        BASE + "[limits]\nbody_timeout = nan\n",
        "limits.body_timeout",
        "must be a finite number greater than 0, got nan",
        id="body-timeout-nan",
    ),
    _bad(
        BASE + '[proxy]\nforwarded = "x-forwarded-for"\n',
        "proxy.forwarded",
        'must be one of "x-forwarded", "forwarded", "none", got "x-forwarded-for"',
        id="forwarded-unknown",
    ),
    _bad(
        BASE + '[proxy]\nvia = "yes"\n',
        "proxy.via",
        'must be true or false, got "yes"',
        id="via-string",
    ),
    _bad(
        BASE + '[log]\nlevel = "INFO"\n',
        "log.level",
        'must be one of "debug", "info", "warning", "error", got "INFO"',
        id="level-uppercase",
    ),
    _bad(
        BASE + "[log]\naccess_log = 1\n",
        "log.access_log",
        "must be true or false, got 1",
        id="access-log-int",
    ),
    _bad(
        BASE + "[log]\nlevel = [1]\n",
        "log.level",
        'must be one of "debug", "info", "warning", "error", got an array',
        id="level-array",
    ),
    _bad(
        "[listen]\naddress = 8080\n" + UPSTREAM,
        "listen.address",
        'must be a "host:port" string, got 8080',
        id="address-int",
    ),
    _bad(
        '[listen]\naddress = "127.0.0.1:0"\n' + UPSTREAM,
        "listen.address",
        f'must be {ADDRESS_FORMS} (port must be an integer between 1 and 65535), got "127.0.0.1:0"',
        id="address-port-zero",
    ),
    _bad(
        LISTEN + '[upstream]\naddress = "localhost"\n',
        "upstream.address",
        f'must be {ADDRESS_FORMS} (missing port), got "localhost"',
        id="address-no-port",
    ),
    _bad(
        LISTEN + '[upstream]\naddress = "::1:80"\n',
        "upstream.address",
        f'must be {ADDRESS_FORMS} (IPv6 address must be in brackets, e.g. "[::1]:8080"),'
        ' got "::1:80"',
        id="address-bare-ipv6",
    ),
    _bad(
        LISTEN + '[upstream]\naddress = "http://backend:80"\n',
        "upstream.address",
        f'must be {ADDRESS_FORMS} (must not contain a scheme or a path), got "http://backend:80"',
        id="address-url",
    ),
    _bad(
        LISTEN + "[upstream]\naddress = 2024-01-01\n",
        "upstream.address",
        'must be a "host:port" string, got a date',
        id="address-date",
    ),
    # nested tables
    _bad(
        BASE + "[upstream.health]\nenable = true\n",
        "upstream.health.enable",
        "unknown key",
        id="nested-unknown-key",
    ),
    _bad(BASE + "[upstream.bogus]\n", "upstream.bogus", "unknown key", id="nested-unknown-table"),
    _bad(
        LISTEN + '[upstream]\naddress = "h:1"\nhealth = 1\n',
        "upstream.health",
        "must be a table, got 1",
        id="nested-not-table",
    ),
    _bad(
        BASE + "[upstream.tcp_keepalive]\ncount = 128\n",
        "upstream.tcp_keepalive.count",
        "must be an integer between 1 and 127, got 128",
        id="keepalive-count",
    ),
    _bad(
        BASE + "[listen.tcp_keepalive]\nidle = 0\n",
        "listen.tcp_keepalive.idle",
        "must be an integer between 1 and 32767, got 0",
        id="keepalive-idle",
    ),
    _bad(
        BASE + "[upstream.tcp_keepalive]\ninterval = 5\ncount = 3\nuser_timeout = 10\n",
        "upstream.tcp_keepalive.user_timeout",
        "must be 0 or at least interval x count seconds",
        id="keepalive-user-timeout-below-probes",
    ),
    _bad(
        BASE + "[upstream.health]\ninterval = 1\ntimeout = 2\n",
        "upstream.health.timeout",
        "must not be greater than interval (checks would overlap)",
        id="health-timeout-over-interval",
    ),
    _bad(
        BASE + '[upstream.health]\npath = "healthz"\n',
        "upstream.health.path",
        'must be a path starting with "/" (printable ASCII, no spaces), got "healthz"',
        id="health-path",
    ),
    _bad(
        BASE + "[upstream.health]\nfall = 0\n",
        "upstream.health.fall",
        "must be an integer between 1 and 100, got 0",
        id="health-fall",
    ),
    _bad(
        LISTEN + '[upstream]\naddress = "h:1"\nmin_ttl = 10\nmax_ttl = 5\n',
        "upstream.min_ttl",
        "must not be greater than max_ttl",
        id="ttl-order",
    ),
    _bad(
        LISTEN + '[upstream]\naddress = "h:1"\nnameservers = ["dns.example"]\n',
        "upstream.nameservers",
        '"dns.example": not an IP address (a name server must be an IP address)',
        id="nameserver-name",
    ),
    _bad(
        LISTEN + '[upstream]\naddress = "h:1"\nnameservers = "127.0.0.1"\n',
        "upstream.nameservers",
        'must be an array of IP addresses, each "ip", "ip:port" or "[ipv6]:port", got "127.0.0.1"',
        id="nameservers-not-array",
    ),
    _bad(
        LISTEN + '[upstream]\naddress = "h:1"\nbalance = "random"\n',
        "upstream.balance",
        'must be one of "least_outstanding", "round_robin", got "random"',
        id="balance",
    ),
    _bad(
        BASE + "[close]\nmax_age_jitter = 5\n",
        "close.max_age_jitter",
        "needs max_age",
        id="jitter-without-max-age",
    ),
    _bad(
        BASE + '[close.scope]\nclients = ["10.0.0.0/33"]\n',
        "close.scope.clients",
        '"10.0.0.0/33": not an IP network such as "10.0.0.0/8" or "::1/128"',
        id="scope-network",
    ),
    _bad(
        BASE + '[close.scope]\npaths = ["api"]\n',
        "close.scope.paths",
        '"api": not a path prefix starting with "/" (without "?" or "#")',
        id="scope-path",
    ),
    _bad(
        BASE + '[migration]\nepoch = "2026-11-26T10:00:00"\n',
        "migration.epoch",
        'must be an RFC 3339 time with a UTC offset (Z or +hh:mm), got "2026-11-26T10:00:00"',
        id="epoch-without-offset",
    ),
    _bad(
        BASE + '[migration]\nepoch = "yesterday"\n',
        "migration.epoch",
        'must be an RFC 3339 time such as "2026-11-26T10:00:00Z", "now" or "", got "yesterday"',
        id="epoch-bad",
    ),
    _bad(
        BASE + "[drain]\ntimeout = 0\n",
        "drain.timeout",
        "must be a finite number greater than 0, got 0",
        id="drain-timeout",
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", None),
        ("2026-11-26T10:00:00Z", 1795687200.0),
        ("2026-11-26T11:00:00+01:00", 1795687200.0),
    ],
)
def test_migration_epoch(text: str, expected: float | None) -> None:
    config = parse(BASE + f'[migration]\nepoch = "{text}"\n')
    assert config.migration.epoch == Epoch(expected, text)


def test_migration_epoch_now_is_the_load_time() -> None:
    before = time.time()
    epoch = parse(BASE + '[migration]\nepoch = "now"\n').migration.epoch
    assert epoch.text == "now" and epoch.at is not None and before <= epoch.at <= time.time()


def test_close_scope() -> None:
    scope = parse(
        BASE + '[close.scope]\nhosts = ["API.example.com"]\npaths = ["/v1/"]\n'
        'clients = ["10.0.0.0/8", "2001:db8::1"]\n'
    ).close.scope
    assert scope == ScopeConfig(
        hosts=("api.example.com",),
        paths=("/v1/",),
        clients=(ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::1/128")),
    )


def test_nested_tables_keep_their_parents_defaults() -> None:
    config = parse(BASE + "[upstream.tcp_keepalive]\nidle = 7\n[upstream.health]\nenabled = true\n")
    assert config.upstream.tcp_keepalive == TcpKeepaliveConfig(
        enabled=True, idle=7, interval=5, count=3
    )
    assert config.listen.tcp_keepalive == TcpKeepaliveConfig(enabled=False)
    assert config.upstream.health == HealthConfig(enabled=True)
    assert config.upstream.tcp_keepalive.detection_seconds() == 7 + 5 * 3


def test_nameservers() -> None:
    config = parse(
        LISTEN + '[upstream]\naddress = "svc.test:80"\n'
        'nameservers = ["127.0.0.1", "127.0.0.2:5353", "::1", "[::1]:53"]\n'
    )
    assert config.upstream.nameservers == (
        Address("127.0.0.1", 53),
        Address("127.0.0.2", 5353),
        Address("::1", 53),
        Address("::1", 53),
    )


@pytest.mark.parametrize(("text", "key", "reason"), BAD_CONFIGS)
def test_bad_config(text: str, key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(text)
    assert str(info.value).startswith(f"proxy.toml: {key}: ")
    assert str(info.value) == f"proxy.toml: {key}: {reason}"
    assert (info.value.source, info.value.key, info.value.reason) == ("proxy.toml", key, reason)


def test_bad_config_from_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "proxy.toml"
    path.write_text(BASE + "[close]\nratio = 1.5\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: close.ratio: must be a number between 0.0 and 1.0, got 1.5"


def test_load_config_accepts_str_and_path(tmp_path: Path) -> None:
    path = tmp_path / "proxy.toml"
    path.write_text(BASE, encoding="utf-8")
    assert load_config(path) == load_config(str(path))
    assert load_config(path).source == str(path)


def test_toml_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('[listen\naddress = "127.0.0.1:8080"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == "-"
    assert str(info.value).startswith(f"{path}: -: invalid TOML: ")
    assert "line 1" in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: -: cannot read file: No such file or directory"


@pytest.mark.timeout(10)  # opening a FIFO with no writer would block for ever
def test_a_fifo_or_a_directory_is_refused_without_waiting(tmp_path: Path) -> None:
    # The config file is read on the event loop (its watch, SIGHUP, POST /reload): a FIFO
    # put in its place froze the whole proxy until something wrote into it.
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    for path, reason in ((fifo, "not a regular file"), (tmp_path, "Is a directory")):
        with pytest.raises(ConfigError) as info:
            load_config(path)
        assert str(info.value) == f"{path}: -: cannot read file: {reason}"


def test_file_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b"# caf\xe9\n" + BASE.encode())
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: -: not valid UTF-8")


def test_config_error_pickles() -> None:
    err = ConfigError("proxy.toml", "close.ratio", "must be a number")
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.source, copy.key, copy.reason, str(copy)) == (
        err.source,
        err.key,
        err.reason,
        str(err),
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("[::1]:80", Address("::1", 80), id="loopback"),
        pytest.param("[::]:8080", Address("::", 8080), id="any"),
        pytest.param("[2001:db8::17]:65535", Address("2001:db8::17", 65535), id="full"),
        pytest.param("[fe80::1%eth0]:443", Address("fe80::1%eth0", 443), id="scoped"),
        pytest.param("[::ffff:10.0.0.1]:1", Address("::ffff:10.0.0.1", 1), id="v4-mapped"),
    ],
)
def test_parse_ipv6_address(text: str, expected: Address) -> None:
    assert parse_address(text) == expected


def test_ipv6_address_in_config() -> None:
    config = parse('[listen]\naddress = "[::1]:8080"\n' + UPSTREAM)
    assert config.listen.address == Address("::1", 8080)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("[::1]", id="v6-no-port"),
        pytest.param("[::1]:", id="v6-empty-port"),
        pytest.param("[not-v6]:80", id="v6-bad"),
        pytest.param("[127.0.0.1]:80", id="v4-in-brackets"),
        pytest.param("::1", id="v6-bare"),
        pytest.param("localhost", id="no-port"),
        pytest.param(":80", id="no-host"),
        pytest.param("host:0", id="port-zero"),
        pytest.param("host:65536", id="port-big"),
        pytest.param("host:+80", id="port-sign"),
        pytest.param("host:８０", id="port-fullwidth-digits"),
        pytest.param("host:http", id="port-name"),
        pytest.param("bad host:80", id="space-in-host"),
        pytest.param("host/path:80", id="path"),
        pytest.param("", id="empty"),
    ],
)
def test_parse_address_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_address(text)


@pytest.mark.parametrize(
    "text",
    [
        "127.0.0.1:8080",
        "localhost:1",
        "backend-1.example.com:65535",
        "[::1]:80",
        "[2001:db8::1]:8443",
        "[fe80::1%eth0]:443",
    ],
)
def test_address_str_round_trip(text: str) -> None:
    address = parse_address(text)
    assert str(address) == text
    assert parse_address(str(address)) == address


def test_address_str_brackets_ipv6() -> None:
    assert str(Address("::1", 80)) == "[::1]:80"
    assert str(Address("10.0.0.1", 80)) == "10.0.0.1:80"


def test_configs_are_frozen() -> None:
    config = parse(BASE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.close.ratio = 0.5  # type: ignore[misc]
