# The C head parser (migproxy/http1/_speedups.c) against its specification, parse.py's
# py_parse_request_head and py_parse_response_head: for every head, both give the same head
# or the same error. Heads come from seeded generators (valid, rare and invalid forms mixed)
# and from byte mutations of valid heads, so a failure names a reproducible input.
#
# The C parser must also really take the common heads itself (else it would be a slow
# detour), hand the others over, and keep no references it should not.
from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from migproxy.errors import RemoteProtocolError
from migproxy.http1 import parse
from migproxy.http1.events import RequestHead, ResponseHead
from migproxy.http1.headers import Fields
from tests.conftest import unavailable

Outcome = tuple[object, ...]

# Request lines that are valid (the C parser takes the origin-form ones).
CLEAN_REQUEST_LINES = [
    b"GET / HTTP/1.1",
    b"GET /index.html?q=1&r=%20 HTTP/1.1",
    b"POST /upload HTTP/1.1",
    b"HEAD / HTTP/1.0",
    b"GET / HTTP/1.0",
    b"PUT /x HTTP/1.9",
    b"get /lower HTTP/1.1",
    b"CONNECT example.com:443 HTTP/1.1",
    b"connect /x HTTP/1.1",
]
REQUEST_LINES = CLEAN_REQUEST_LINES + [  # rare forms and errors
    b"OPTIONS * HTTP/1.1",
    b"GET http://example.com/ HTTP/1.1",
    b"GET HTTPS://example.com/ HTTP/1.1",
    b"GET example.com HTTP/1.1",
    b"GET / HTTP/2.0",
    b"GET / HTTP/1.",
    b"GET / http/1.1",
    b"GET / HTTP/11",
    b"GET  / HTTP/1.1",
    b"GET / HTTP/1.1 ",
    b"G(T / HTTP/1.1",
    b" GET / HTTP/1.1",
    b"GET /\x7f HTTP/1.1",
    b"GET /\x80 HTTP/1.1",
    b"GET",
    b"",
]
# Status lines that are valid.
CLEAN_STATUS_LINES = [
    b"HTTP/1.1 200 OK",
    b"HTTP/1.1 200",
    b"HTTP/1.1 200 ",
    b"HTTP/1.1 200 Very  Fine\tThanks \x80\xff",
    b"HTTP/1.0 200 OK",
    b"HTTP/1.1 204 No Content",
    b"HTTP/1.1 304 Not Modified",
    b"HTTP/1.1 100 Continue",
    b"HTTP/1.1 101 Switching Protocols",
    b"HTTP/1.1 103 Early Hints",
    b"HTTP/1.1 404 Not Found",
    b"HTTP/1.1 599 Whatever",
    b"HTTP/1.9 200 OK",
]
STATUS_LINES = CLEAN_STATUS_LINES + [  # errors
    b"HTTP/1.1 099 Too Low",
    b"HTTP/1.1 000 Zero",
    b"HTTP/1.1 20 OK",
    b"HTTP/1.1 2000 OK",
    b"HTTP/1.1 200\x7fOK",
    b"HTTP/1.1 200 O\x00K",
    b"HTTP/2.0 200 OK",
    b"HTTP/1.1  200 OK",
    b"http/1.1 200 OK",
    b"HTTP/1.1",
    b"",
]
# The fields that decide framing, keep-alive and forwarding, in several spellings.
SPECIAL_NAMES = [
    b"Host",
    b"host",
    b"HOST",
    b"Content-Length",
    b"content-length",
    b"Transfer-Encoding",
    b"transfer-encoding",
    b"Connection",
    b"connection",
    b"Keep-Alive",
    b"Proxy-Connection",
    b"TE",
    b"te",
    b"Trailer",
    b"Upgrade",
    b"Expect",
    b"X-Forwarded-Proto",
]
# Valid names of fields that the parser only forwards (some close to a special name).
OTHER_NAMES = [
    b"X-Forwarded-For",
    b"User-Agent",
    b"Accept",
    b"Content-Type",
    b"Server",
    b"Date",
    b"X-Custom_Name!#$%&'*+.^`|~",
    b"Hosts",
    b"Content-Lengthy",
    b"tee",
]
CLEAN_NAMES = SPECIAL_NAMES + OTHER_NAMES
NAMES = CLEAN_NAMES + [  # invalid
    b"Bad Name",
    b"Bad\x00Name",
    b"Bad:Name",
    b"",
]
# Valid field values (some are invalid for the field they end up in).
CLEAN_VALUES = [
    b"example.com",
    b"example.com:8080",
    b"a,b",
    b"0",
    b"5",
    b"17",
    b" 5 ",
    b"\t5\t",
    b"5,5",
    b"5, 5",
    b"-1",
    b"+5",
    b"0x10",
    b"123456789012345678",
    b"1234567890123456789",
    b"chunked",
    b"Chunked ",
    b"gzip, chunked",
    b"chunked, gzip",
    b"gzip",
    b"keep-alive",
    b"Keep-Alive",
    b"keep-alive  ",
    b"close",
    b"CLOSE",
    b"upgrade",
    b"Upgrade",
    b"keep-alive, upgrade",
    b"close, keep-alive",
    b"te",
    b"X-Custom",
    b"Foo Bar",
    b"100-continue",
    b"100-Continue ",
    b"200-continue",
    b"websocket",
    b"",
    b"   ",
    b"https",
    b"value with \x80\xff obs-text",
    b"tab\there",
]
VALUES = CLEAN_VALUES + [  # invalid bytes
    b"a\x01b",
    b"a\x7fb",
    b"a\rb",
    b"a\nb",
]
# A "clean" head is drawn from the CLEAN_ tables alone, so that most generated heads are
# well-formed and the C parser builds them itself.
CLEAN_SEPARATORS = [b"\r\n"]
SEPARATORS = CLEAN_SEPARATORS + [b"\n", b"\r", b"\r\n ", b"\r\n\t", b" \r\n"]


def random_fields(rng: random.Random, clean: bool) -> bytes:
    names = CLEAN_NAMES if clean else NAMES
    values = CLEAN_VALUES if clean else VALUES
    separators = CLEAN_SEPARATORS if clean else SEPARATORS
    colons = [b": ", b":", b":  ", b":\t"] + ([] if clean else [b" : "])
    lines = []
    for _ in range(rng.randrange(0, 7)):
        # Clean heads name mostly ordinary fields: each special one may spoil a head.
        name = rng.choice(OTHER_NAMES if clean and rng.random() < 0.7 else names)
        value = rng.choice(values)
        lines.append(name + rng.choice(colons) + value + rng.choice(separators))
    return b"".join(lines)


def random_request(rng: random.Random) -> bytes:
    clean = rng.random() < 0.7
    fields = random_fields(rng, clean)
    if rng.random() < 0.8:  # most requests carry a Host, as most clients send one
        fields = b"Host: example.com\r\n" + fields
    lines = CLEAN_REQUEST_LINES if clean else REQUEST_LINES
    separators = CLEAN_SEPARATORS if clean else SEPARATORS
    return rng.choice(lines) + rng.choice(separators) + fields + b"\r\n"


def random_response(rng: random.Random) -> bytes:
    clean = rng.random() < 0.7
    lines = CLEAN_STATUS_LINES if clean else STATUS_LINES
    separators = CLEAN_SEPARATORS if clean else SEPARATORS
    return rng.choice(lines) + rng.choice(separators) + random_fields(rng, clean) + b"\r\n"


def mutate(rng: random.Random, head: bytes) -> bytes:
    """One byte replaced, inserted or deleted, keeping the blank line that ends the head."""
    body = bytearray(head[:-4])
    at = rng.randrange(0, len(body) + 1)
    byte = rng.choice([0, 9, 10, 13, 32, 44, 58, 127, 128, 255, rng.randrange(256)])
    action = rng.randrange(3)
    if action == 0 and at < len(body):
        body[at] = byte
    elif action == 1:
        body.insert(at, byte)
    elif at < len(body):
        del body[at]
    return bytes(body) + b"\r\n\r\n"


def outcome(parse_head: Callable[..., Any], *args: Any) -> Outcome:
    """A comparable summary of what a parser did: the whole head, or the whole error."""
    try:
        head = parse_head(*args)
    except RemoteProtocolError as err:
        return ("error", err.reason, err.status_hint)
    values = tuple(getattr(head, name) for name in head.__slots__ if name != "fields")
    fields = head.fields
    return (type(head).__name__, values, fields.raw, fields.single_connection_line)


def require_accelerator() -> None:
    if not parse.ACCELERATED:
        unavailable("the C head parser was not built (scripts/setup needs gcc and Python.h)")


def framed(rng: random.Random, head: bytes) -> tuple[bytes, int, int]:
    """`head` inside a buffer, sometimes after earlier bytes and before pipelined ones."""
    before = rng.choice([b"", b"", b"GET /prev HTTP/1.1\r\nHost: x\r\n\r\n", b"junk"])
    after = rng.choice([b"", b"", b"GET /next HTTP/1.1\r\n", b"\r\n\r\nxyz"])
    return before + head + after, len(before), len(before) + len(head)


def check_request(rng: random.Random, head: bytes) -> None:
    buf, start, end = framed(rng, head)
    max_fields = rng.choice([1, 2, 3, 100])
    args = (buf, start, end, max_fields)
    c, spec = outcome(parse.parse_request_head, *args), outcome(parse.py_parse_request_head, *args)
    assert c == spec, f"request head {head!r} (max_fields={max_fields})"


def check_response(rng: random.Random, head: bytes) -> None:
    buf, start, end = framed(rng, head)
    max_fields = rng.choice([1, 2, 3, 100])
    method = rng.choice([b"GET", b"GET", b"HEAD", b"POST", b"head"])
    args = (buf, start, end, max_fields, method)
    c = outcome(parse.parse_response_head, *args)
    spec = outcome(parse.py_parse_response_head, *args)
    assert c == spec, f"response head {head!r} (max_fields={max_fields}, method={method!r})"


@pytest.mark.parametrize("seed", range(8))
def test_generated_request_heads_parse_as_the_specification(seed: int) -> None:
    require_accelerator()
    rng = random.Random(seed)
    for _ in range(3000):
        check_request(rng, random_request(rng))


@pytest.mark.parametrize("seed", range(8))
def test_generated_response_heads_parse_as_the_specification(seed: int) -> None:
    require_accelerator()
    rng = random.Random(1000 + seed)
    for _ in range(3000):
        check_response(rng, random_response(rng))


VALID_REQUEST = (
    b"GET /index.html HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t/1\r\n"
    b"Connection: keep-alive\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
)
VALID_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: t\r\nContent-Length: 17\r\nConnection: keep-alive\r\n"
    b"Keep-Alive: timeout=5\r\n\r\n"
)
VALID_CHUNKED_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nDate: today\r\nConnection: close\r\n\r\n"
)


@pytest.mark.parametrize("seed", range(4))
def test_mutated_heads_parse_as_the_specification(seed: int) -> None:
    require_accelerator()
    rng = random.Random(2000 + seed)
    for _ in range(4000):
        check_request(rng, mutate(rng, VALID_REQUEST))
        check_response(rng, mutate(rng, VALID_RESPONSE))
        check_response(rng, mutate(rng, VALID_CHUNKED_RESPONSE))


@contextmanager
def counted_fallbacks() -> Iterator[list[str]]:
    """Rebind the accelerator with fallbacks that record each head handed to them."""
    calls: list[str] = []

    def request(*args: Any) -> RequestHead:
        calls.append("request")
        return parse.py_parse_request_head(*args)

    def response(*args: Any) -> ResponseHead:
        calls.append("response")
        return parse.py_parse_response_head(*args)

    parse.bind_speedups(request, response)
    try:
        yield calls
    finally:
        parse.bind_speedups()


# What browsers, curl, wrk and load balancers send, and what nginx and friends answer.
COMMON_REQUESTS = [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /x?y=1 HTTP/1.1\r\nHost: a\r\nUser-Agent: curl/7.88\r\nAccept: */*\r\n\r\n",
    b"POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\nContent-Type: x/y\r\n\r\n",
    b"PUT /f HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-Proto: https\r\nTE: trailers\r\n\r\n",
]
COMMON_RESPONSES = [
    (b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 17\r\n\r\n", b"GET"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n", b"GET"),
    (b"HTTP/1.1 204 No Content\r\n\r\n", b"DELETE"),
    (b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n", b"GET"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", b"HEAD"),
    (b"HTTP/1.1 100 Continue\r\n\r\n", b"PUT"),
    (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n", b"GET"),
    (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        b"GET",
    ),
]
# Valid but rare, or invalid: each is handed to the specification.
HANDED_OVER_REQUESTS = [
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, upgrade\r\nUpgrade: h2c\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nAccept: a\r\nConnection: x\r\nConnection: y\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
]


def test_common_heads_are_parsed_in_c_and_the_rest_handed_over() -> None:
    require_accelerator()
    with counted_fallbacks() as calls:
        for head in COMMON_REQUESTS:
            parse.parse_request_head(head, 0, len(head), 100)
        for head, method in COMMON_RESPONSES:
            parse.parse_response_head(head, 0, len(head), 100, method)
        assert calls == []
        for head in HANDED_OVER_REQUESTS:
            outcome(parse.parse_request_head, head, 0, len(head), 100)
        assert calls == ["request"] * len(HANDED_OVER_REQUESTS)


def test_buffers_other_than_bytes_are_handed_over() -> None:
    require_accelerator()
    head = COMMON_REQUESTS[1]
    with counted_fallbacks() as calls:
        got = outcome(parse.parse_request_head, bytearray(head), 0, len(head), 100)
        assert calls == ["request"]
    assert got == outcome(parse.py_parse_request_head, head, 0, len(head), 100)


def test_wrong_argument_count_is_a_type_error() -> None:
    require_accelerator()
    with pytest.raises(TypeError):
        parse.parse_request_head(b"GET / HTTP/1.1\r\n\r\n", 0, 18)  # type: ignore[call-arg]


def test_parsing_keeps_no_stray_references() -> None:
    require_accelerator()
    shared = [
        parse._NO_TOKENS,
        parse._COMMON_TOKENS[b"keep-alive"],
        parse._COMMON_TOKENS[b"close"],
        parse._LENGTH_BODY,
        parse._NONE_BODY,
        parse._CHUNKED_BODY,
        parse._UNTIL_CLOSE_BODY,
        RequestHead,
        ResponseHead,
        Fields,
    ]
    heads = COMMON_REQUESTS + HANDED_OVER_REQUESTS[:3]

    def parse_all() -> None:
        for head in heads:
            outcome(parse.parse_request_head, head, 0, len(head), 100)
        for head, method in COMMON_RESPONSES:
            outcome(parse.parse_response_head, head, 0, len(head), 100, method)

    parse_all()  # caches warmed
    before = [sys.getrefcount(obj) for obj in shared]
    for _ in range(200):
        parse_all()
    assert [sys.getrefcount(obj) for obj in shared] == before


def test_calls_before_bind_are_refused() -> None:
    require_accelerator()
    code = (
        "from migproxy.http1 import _speedups\n"
        "try:\n"
        "    _speedups.parse_request_head(b'GET / HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n', 0, 29, 9)\n"
        "except RuntimeError as err:\n"
        "    print(err)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert done.stdout.strip() == "migproxy.http1.parse has not called bind()"


@pytest.mark.parametrize(
    ("start", "end"),
    [
        pytest.param(1, -(2**63), id="end-far-below-start"),
        pytest.param(2**62, 2**62 + 10, id="start-past-the-buffer"),
        pytest.param(5, 3, id="end-before-start"),
        pytest.param(-1, 10, id="negative-start"),
        pytest.param(0, 2**63, id="end-out-of-range"),
        pytest.param(0, 10**30, id="end-not-a-machine-int"),
    ],
)
def test_offsets_outside_the_buffer_are_handed_over(start: int, end: int) -> None:
    # The readers never pass such offsets; the C code must still never read outside `buf`
    # (an `end - start` that wrapped around once did) and answer what the spec answers.
    require_accelerator()
    for parse_head, spec, args in (
        (parse.parse_request_head, parse.py_parse_request_head, (100,)),
        (parse.parse_response_head, parse.py_parse_response_head, (100, b"GET")),
    ):
        head = b"xHTTP/1.1 200 OK\r\nHost: a\r\n\r\n"
        c_error = spec_error = None
        try:
            c_result = outcome(parse_head, head, start, end, *args)
        except (ValueError, OverflowError, IndexError) as err:
            c_error = type(err)
        try:
            spec_result = outcome(spec, head, start, end, *args)
        except (ValueError, OverflowError, IndexError) as err:
            spec_error = type(err)
        assert c_error == spec_error
        if c_error is None:
            assert c_result == spec_result
