# The admin HTTP endpoint (aiohttp, on the proxy's own event loop): metrics, health, readiness
# and the effective configuration. It reads the proxy's state and never blocks the data path.
from __future__ import annotations

import dataclasses
import json

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from migproxy.errors import UpstreamError
from migproxy.metrics import flush
from migproxy.proxy import ProxyContext

CTX: web.AppKey[ProxyContext] = web.AppKey("ctx", ProxyContext)
REGISTRY: web.AppKey[CollectorRegistry] = web.AppKey("registry", CollectorRegistry)
REDACTED = "<redacted>"


def make_admin_app(ctx: ProxyContext, registry: CollectorRegistry) -> web.Application:
    """The admin application: GET /metrics, /healthz, /readyz, /config, /upstreams."""
    app = web.Application()
    app[CTX] = ctx
    app[REGISTRY] = registry
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/config", config)
    app.router.add_get("/upstreams", upstreams)
    return app


async def metrics(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    if ctx.metrics is not None:
        flush(ctx.stats, ctx.metrics)  # counts are exact at the moment of the scrape
    body = generate_latest(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    """200 while serving with a reachable upstream; 503 with the reason otherwise."""
    ctx = request.app[CTX]
    if ctx.draining:
        return web.Response(status=503, text="draining\n")
    if not ctx.serving:
        return web.Response(status=503, text="listeners not bound yet\n")
    group = ctx.upstreams
    backend = group.pick()
    if backend is None:
        return web.Response(status=503, text=f"{group.unavailable_reason()}\n")
    if len(backend.pool) == 0:
        try:
            conn = await group.connect(backend)
        except UpstreamError as err:
            return web.Response(status=503, text=f"upstream unreachable: {err}\n")
        ctx.release_upstream(conn)  # the probe's connection warms the pool
    return web.Response(text="ready\n")


async def upstreams(request: web.Request) -> web.Response:
    """The upstream name's current addresses: health, load and idle connections."""
    group = request.app[CTX].upstreams
    data = {
        "name": group.name,
        "all_down": group.balancer.all_down,
        "addresses": group.describe(),
    }
    return web.json_response(data, dumps=lambda d: json.dumps(d, indent=2) + "\n")


async def config(request: web.Request) -> web.Response:
    cfg = request.app[CTX].config
    data = dataclasses.asdict(cfg)
    if cfg.admin.token:
        data["admin"]["token"] = REDACTED
    return web.Response(
        text=json.dumps(data, indent=2, default=str) + "\n", content_type="application/json"
    )


async def start_admin(ctx: ProxyContext, registry: CollectorRegistry) -> web.AppRunner | None:
    """Serve the admin app on admin.address (None when it is switched off)."""
    address = ctx.config.admin.address
    if address is None:
        return None
    runner = web.AppRunner(make_admin_app(ctx, registry), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, address.host, address.port).start()
    return runner
