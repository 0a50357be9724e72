# Pure tests of migproxy.http1.headers: Fields lookups, comma-list tokens (RFC 9110 §5.6.1)
# and the hop-by-hop set (RFC 9110 §7.6.1).
from __future__ import annotations

import pytest

from migproxy.http1.headers import HOP_BY_HOP, Fields, hop_by_hop_names, split_tokens
from migproxy.http1.parse import split_fields


def make_fields(*lines: bytes) -> Fields:
    """Fields built by the parser from these raw lines."""
    block = b"".join(line + b"\r\n" for line in lines)
    return split_fields(block, 0, len(block), 100)


def test_from_pairs_builds_lines_and_lowercase_names() -> None:
    fields = Fields.from_pairs([(b"Host", b"x"), (b"X-Thing", b"a b")])
    assert fields.lines == [b"Host: x", b"X-Thing: a b"]
    assert fields.names == [b"host", b"x-thing"]
    assert len(fields) == 2


def test_get_returns_first_value_without_ows() -> None:
    fields = make_fields(b"Accept:  text/html \t", b"ACCEPT: */*")
    assert fields.get(b"accept") == b"text/html"


def test_get_missing_name() -> None:
    assert make_fields(b"Host: x").get(b"accept") is None
    assert make_fields().get(b"host") is None


def test_get_all_in_order() -> None:
    fields = make_fields(b"Via: 1.0 a", b"Host: x", b"via:\t1.1 b ")
    assert fields.get_all(b"via") == [b"1.0 a", b"1.1 b"]
    assert fields.get_all(b"accept") == []


def test_get_does_not_match_a_longer_name() -> None:
    fields = make_fields(b"Hostname: y", b"Host: x")
    assert fields.get(b"host") == b"x"
    assert fields.get_all(b"host") == [b"x"]


@pytest.mark.parametrize(
    ("lines", "tokens"),
    [
        pytest.param([b"Connection: close"], [b"close"], id="one"),
        pytest.param([b"Connection: Keep-Alive, CLOSE"], [b"keep-alive", b"close"], id="case"),
        pytest.param([b"Connection: ,, a , ,\tb,"], [b"a", b"b"], id="empty-elements"),
        pytest.param([b"Connection: a", b"Connection: b, c"], [b"a", b"b", b"c"], id="lines"),
        pytest.param([b"Connection: "], [], id="empty-value"),
        pytest.param([], [], id="absent"),
    ],
)
def test_tokens(lines: list[bytes], tokens: list[bytes]) -> None:
    assert make_fields(*lines).tokens(b"connection") == tokens


def test_without_drops_names_and_leaves_fields_untouched() -> None:
    fields = make_fields(b"Host: x", b"Connection: close", b"X: 1", b"connection: y")
    assert fields.without(frozenset({b"connection"})) == [b"Host: x", b"X: 1"]
    assert fields.without({b"host", b"x"}) == [b"Connection: close", b"connection: y"]
    assert len(fields) == 4


def test_repr_shows_lines() -> None:
    assert repr(make_fields(b"Host: x")) == "Fields([b'Host: x'])"


def test_hop_by_hop_set() -> None:
    assert HOP_BY_HOP == {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }


def test_hop_by_hop_names_without_tokens() -> None:
    assert hop_by_hop_names([]) == HOP_BY_HOP


def test_hop_by_hop_names_adds_connection_tokens() -> None:
    names = hop_by_hop_names([b"keep-alive", b"x-private"])
    assert HOP_BY_HOP | {b"x-private"} <= names
    assert b"x-private" not in HOP_BY_HOP  # the shared set is not modified


@pytest.mark.parametrize(
    "token",
    [
        # Options name no field.
        pytest.param(b"close", id="close"),
        pytest.param(b"keep-alive", id="keep-alive"),
        pytest.param(b"upgrade", id="upgrade"),
        # A peer must not be able to remove what frames or routes the message.
        pytest.param(b"content-length", id="content-length"),
        pytest.param(b"host", id="host"),
    ],
)
def test_hop_by_hop_names_never_adds(token: bytes) -> None:
    assert hop_by_hop_names([token]) == HOP_BY_HOP
    assert token not in hop_by_hop_names([token, b"x-private"]) - HOP_BY_HOP


def test_fields_wrap_the_raw_block() -> None:
    raw = b"Host: x\r\nX-A:\t1 \r\n"
    fields = Fields(raw)
    assert fields.raw is raw
    assert fields.lines == [b"Host: x", b"X-A:\t1 "]
    assert fields.names == [b"host", b"x-a"]
    assert Fields(b"").lines == []
    assert len(Fields(b"")) == 0


@pytest.mark.parametrize(
    ("values", "tokens"),
    [
        pytest.param([b"a"], [b"a"], id="one"),
        pytest.param([b" A ,\tB"], [b"a", b"b"], id="ows-and-case"),
        pytest.param([b"a,", b",b"], [b"a", b"b"], id="several-values"),
        pytest.param([b", ,"], [], id="only-empty-elements"),
        pytest.param([], [], id="none"),
    ],
)
def test_split_tokens(values: list[bytes], tokens: list[bytes]) -> None:
    assert split_tokens(values) == tokens


# Static hop-by-hop names, written in several cases; none of the kept names is hop-by-hop,
# though some start like one.
HOP_LINES = (
    b"Connection: keep-alive, close, upgrade",
    b"keep-alive: timeout=5",
    b"PROXY-CONNECTION: close",
    b"Te: trailers",
    b"Trailer: X-Sum",
    b"Transfer-Encoding: chunked",
    b"Upgrade: h2c",
)
KEPT_LINES = (
    b"Host: x",
    b"Tea: green",
    b"Upgrade-Insecure-Requests: 1",
    b"Connection-Id: 7",
    b"X-Te: 1",
    b"Trailers: no",
)


@pytest.mark.parametrize(
    ("connection", "dropped"),
    [
        pytest.param([], set(), id="no-tokens"),
        pytest.param([b"close", b"keep-alive", b"upgrade"], set(), id="options-only"),
        pytest.param([b"x-private"], {b"x-private"}, id="names-a-field"),
        pytest.param([b"close", b"x-private", b"x-other"], {b"x-private", b"x-other"}, id="mix"),
    ],
)
def test_without_hop_by_hop(connection: list[bytes], dropped: set[bytes]) -> None:
    private = (b"X-Private: 1", b"x-other: 2")
    fields = make_fields(KEPT_LINES[0], *HOP_LINES, *KEPT_LINES[1:], *private)
    kept = KEPT_LINES + tuple(p for p in private if p.split(b":")[0].lower() not in dropped)
    assert fields.without_hop_by_hop(connection) == b"".join(line + b"\r\n" for line in kept)


def test_without_hop_by_hop_of_an_empty_block() -> None:
    assert Fields(b"").without_hop_by_hop([]) == b""
    assert Fields(b"").without_hop_by_hop([b"x"]) == b""
