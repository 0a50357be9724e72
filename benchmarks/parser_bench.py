"""Head parsing cost: migproxy's parser vs httptools (llhttp) vs h11, per head.

The same browser-like request head and nginx-like response head are parsed repeatedly: by
migproxy's C parser (migproxy/http1/_speedups.c, what the proxy runs), by the pure-Python
parser it falls back to, by httptools and by h11. For
httptools and h11 the header fields are collected the way a proxy needs them (name/value
pairs), so each figure is "bytes in, fields out". Informational: the parser choice is explained
in the README.

Usage: .venv/bin/python benchmarks/parser_bench.py [--count 100000]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import h11
import httptools

from migproxy.http1.parse import (
    ACCELERATED,
    parse_request_head,
    parse_response_head,
    py_parse_request_head,
    py_parse_response_head,
)

REQUEST = (
    b"GET /api/v1/items?page=2 HTTP/1.1\r\nHost: service.example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nAccept: application/json\r\n"
    b"Accept-Encoding: gzip, deflate\r\nAccept-Language: en-US,en;q=0.9\r\n"
    b"Connection: keep-alive\r\nCookie: session=0123456789abcdef\r\n\r\n"
)
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Wed, 25 Nov 2026 23:00:00 GMT\r\n"
    b"Content-Type: application/json\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n"
)


class _Collector:
    """httptools callbacks that collect what a proxy needs."""

    def __init__(self) -> None:
        self.fields: list[tuple[bytes, bytes]] = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.append((name, value))


def ours_request() -> None:
    parse_request_head(REQUEST, 0, len(REQUEST), 100)


def ours_response() -> None:
    parse_response_head(RESPONSE, 0, len(RESPONSE), 100, b"GET")


def pure_request() -> None:
    py_parse_request_head(REQUEST, 0, len(REQUEST), 100)


def pure_response() -> None:
    py_parse_response_head(RESPONSE, 0, len(RESPONSE), 100, b"GET")


def httptools_request() -> None:
    httptools.HttpRequestParser(_Collector()).feed_data(REQUEST)


def httptools_response() -> None:
    httptools.HttpResponseParser(_Collector()).feed_data(RESPONSE)


def h11_request() -> None:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(REQUEST)
    conn.next_event()


def h11_response() -> None:
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    conn.receive_data(RESPONSE)
    conn.next_event()


def per_call_us(fn: Callable[[], None], count: int) -> float:
    start = time.process_time()
    for _ in range(count):
        fn()
    return (time.process_time() - start) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100_000)
    args = parser.parse_args()
    rows = [
        (
            "migproxy" if ACCELERATED else "migproxy (C parser not built)",
            ours_request,
            ours_response,
        ),
        ("migproxy, pure Python (the specification)", pure_request, pure_response),
        ("httptools", httptools_request, httptools_response),
        ("h11", h11_request, h11_response),
    ]
    print("| parser | request head µs | response head µs |")
    print("|---|---:|---:|")
    for name, request, response in rows:
        req = per_call_us(request, args.count)
        resp = per_call_us(response, args.count)
        print(f"| {name} | {req:.2f} | {resp:.2f} |")


if __name__ == "__main__":
    main()
