# The admin HTTP endpoint (aiohttp, on the proxy's own event loop): metrics, health, readiness,
# the effective configuration and the upstream's addresses; and the state-changing requests of
# live control (reload, migration epoch), which need the bearer token when one is configured.
# It never blocks the data path.
from __future__ import annotations

import dataclasses
import datetime
import hmac
import json
import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from migproxy.config import Config
from migproxy.control import Reloader
from migproxy.errors import UpstreamError
from migproxy.metrics import flush
from migproxy.proxy import ProxyContext

CTX: web.AppKey[ProxyContext] = web.AppKey("ctx", ProxyContext)
REGISTRY: web.AppKey[CollectorRegistry] = web.AppKey("registry", CollectorRegistry)
RELOADER: web.AppKey[Reloader | None] = web.AppKey("reloader")
REDACTED = "<redacted>"


def make_admin_app(
    ctx: ProxyContext, registry: CollectorRegistry, reloader: Reloader | None = None
) -> web.Application:
    """The admin application: GET /metrics, /healthz, /readyz, /config, /upstreams,
    /migration; POST /reload, /migration/epoch, /flush."""
    app = web.Application()
    app[CTX] = ctx
    app[REGISTRY] = registry
    app[RELOADER] = reloader
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/config", config)
    app.router.add_get("/upstreams", upstreams)
    app.router.add_get("/migration", migration)
    app.router.add_post("/migration/epoch", set_epoch)
    app.router.add_post("/reload", reload)
    app.router.add_post("/flush", flush_metrics)
    return app


async def metrics(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    if ctx.metrics is not None:
        flush(ctx.stats, ctx.metrics)  # counts are exact at the moment of the scrape
    body = generate_latest(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def flush_metrics(request: web.Request) -> web.Response:
    """Move the counts into the metrics now: the supervisor's /metrics asks every worker
    first, so that a scrape of several workers is as exact as one of a single process."""
    ctx = request.app[CTX]
    if ctx.metrics is not None:
        flush(ctx.stats, ctx.metrics)
    return web.Response(status=204)


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    """200 while serving with a reachable upstream; 503 with the reason otherwise."""
    ctx = request.app[CTX]
    if ctx.stopping:
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
    return json_response(data)


async def config(request: web.Request) -> web.Response:
    return config_response(request.app[CTX].config)


def config_response(cfg: Config) -> web.Response:
    """The configuration in force as JSON, the admin token redacted."""
    data = dataclasses.asdict(cfg)
    if cfg.admin.token:
        data["admin"]["token"] = REDACTED
    return web.Response(
        text=json.dumps(data, indent=2, default=str) + "\n", content_type="application/json"
    )


def _refused(request: web.Request) -> web.Response | None:
    return token_refusal(request.app[CTX].config.admin.token, request)


def token_refusal(token: str, request: web.Request) -> web.Response | None:
    """401 unless the request carries `token` as its bearer token (None: no token needed)."""
    if not token:
        return None
    given = request.headers.get("Authorization", "")
    # aiohttp decodes header bytes that are not UTF-8 as surrogates: give them back as bytes.
    if hmac.compare_digest(given.encode("utf-8", "surrogateescape"), f"Bearer {token}".encode()):
        return None
    return web.Response(
        status=401,
        text="this request needs Authorization: Bearer <[admin] token>\n",
        headers={"WWW-Authenticate": "Bearer"},
    )


def json_response(data: object, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(data, indent=2) + "\n",
        content_type="application/json",
    )


async def migration(request: web.Request) -> web.Response:
    """The migration state: epoch, the ratio in force, budget and returning clients."""
    return json_response(request.app[CTX].migration_state())


async def set_epoch(request: web.Request) -> web.Response:
    """Start a migration epoch: now, or at {"epoch": RFC 3339 time} from a JSON body."""
    refused = _refused(request)
    if refused is not None:
        return refused
    at = time.time()
    if request.can_read_body:
        try:
            body = await request.json()
            text = body.get("epoch", "now") if isinstance(body, dict) else None
            if not isinstance(text, str):
                raise ValueError("epoch must be a string")
            if text != "now":
                moment = datetime.datetime.fromisoformat(text)
                if moment.tzinfo is None:
                    raise ValueError("needs a UTC offset (Z or +hh:mm)")
                at = moment.timestamp()
        except ValueError as err:
            return json_response(
                {"error": f'epoch: expected an RFC 3339 time or "now": {err}'}, 400
            )
    ctx = request.app[CTX]
    ctx.set_epoch(at)
    return json_response(ctx.migration_state())


async def reload(request: web.Request) -> web.Response:
    """Reload the config file; 200 with what changed, or 400 with `FILE: key: reason`."""
    refused = _refused(request)
    if refused is not None:
        return refused
    reloader = request.app[RELOADER]
    if reloader is None:
        return json_response({"error": "this proxy was not started from a config file"}, 409)
    applied, message = reloader.reload("POST /reload")
    return json_response({"reloaded": applied, "message": message}, 200 if applied else 400)


async def start_admin(
    ctx: ProxyContext, registry: CollectorRegistry, reloader: Reloader | None = None
) -> web.AppRunner | None:
    """Serve the admin app on admin.address (None when it is switched off)."""
    address = ctx.config.admin.address
    if address is None:
        return None
    runner = web.AppRunner(make_admin_app(ctx, registry, reloader), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, address.host, address.port).start()
    return runner
