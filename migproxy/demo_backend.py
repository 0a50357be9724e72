# A small HTTP backend bundled for the README demo and the tests (aiohttp.web).
#
# Routes:
#   GET  /              a short text answer naming the backend
#   GET  /bytes/{n}     n bytes, streamed in 64 KiB pieces (Content-Length)
#   GET  /chunked/{n}   n bytes, streamed chunked (no Content-Length)
#   POST /echo          the request body, streamed back as it arrives
#   POST /count         the number of body bytes received, read in a stream
#   GET  /headers       the request head as the backend saw it
#   GET  /ws            a WebSocket echo (for Upgrade tests)
from __future__ import annotations

import argparse

from aiohttp import WSMsgType, web

PIECE = 64 * 1024
_ZEROS = b"x" * PIECE


async def root(request: web.Request) -> web.Response:
    name = request.app["name"]
    return web.Response(text=f"hello from {name}\n")


async def bytes_(request: web.Request) -> web.StreamResponse:
    n = int(request.match_info["n"])
    resp = web.StreamResponse()
    resp.content_length = n
    await resp.prepare(request)
    await _stream_zeros(resp, n)
    return resp


async def chunked(request: web.Request) -> web.StreamResponse:
    n = int(request.match_info["n"])
    resp = web.StreamResponse()
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    await _stream_zeros(resp, n)
    return resp


async def _stream_zeros(resp: web.StreamResponse, n: int) -> None:
    while n > 0:
        piece = _ZEROS if n >= PIECE else _ZEROS[:n]
        await resp.write(piece)
        n -= len(piece)
    await resp.write_eof()


async def echo(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    if request.content_length is not None:
        resp.content_length = request.content_length
    else:
        resp.enable_chunked_encoding()
    await resp.prepare(request)
    async for piece in request.content.iter_chunked(PIECE):
        await resp.write(piece)
    await resp.write_eof()
    return resp


async def count(request: web.Request) -> web.Response:
    total = 0
    async for piece in request.content.iter_chunked(PIECE):
        total += len(piece)
    return web.Response(text=f"{total}\n")


async def headers(request: web.Request) -> web.Response:
    lines = [
        f"{request.method} {request.path_qs} HTTP/{request.version.major}.{request.version.minor}"
    ]
    lines += [
        f"{name.decode('latin-1')}: {value.decode('latin-1')}"
        for name, value in request.raw_headers
    ]
    return web.Response(text="\n".join(lines) + "\n")


async def ws(request: web.Request) -> web.WebSocketResponse:
    sock = web.WebSocketResponse()
    await sock.prepare(request)
    async for msg in sock:
        if msg.type == WSMsgType.TEXT:
            await sock.send_str(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await sock.send_bytes(msg.data)
    return sock


def make_app(name: str = "demo-backend") -> web.Application:
    app = web.Application(client_max_size=0)
    app["name"] = name
    app.router.add_get("/", root)
    app.router.add_get("/bytes/{n:[0-9]+}", bytes_)
    app.router.add_get("/chunked/{n:[0-9]+}", chunked)
    app.router.add_post("/echo", echo)
    app.router.add_post("/count", count)
    app.router.add_get("/headers", headers)
    app.router.add_get("/ws", ws)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="migproxy demo-backend")
    parser.add_argument("--listen", default="127.0.0.1:8081", help="host:port to listen on")
    parser.add_argument("--name", default="demo-backend", help="name shown in answers")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    web.run_app(make_app(args.name), host=host.strip("[]"), port=int(port), print=None)
