# The state one worker's connections share: configuration turned into ready-to-use rules, the
# upstream group (addresses, health, pools), the random source of close draws, and the set of
# live client connections that the timeout sweep walks. The per-connection data path is
# server/client_protocol.py.
from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from migproxy.config import CloseConfig, Config
from migproxy.http1.serialize import ForwardingRules
from migproxy.metrics import Metrics, flush
from migproxy.policy.close import ClosePolicy
from migproxy.policy.gate import CloseGate
from migproxy.policy.ramp import ramped_ratio
from migproxy.policy.returning import ReturningClients
from migproxy.policy.scope import Scope
from migproxy.stats import Stats
from migproxy.upstream.connection import UpstreamConnection
from migproxy.upstream.group import UpstreamGroup

if TYPE_CHECKING:
    from migproxy.server.client_protocol import ClientProtocol

log = logging.getLogger("migproxy")


class ProxyContext:
    """Everything the connections of one worker share."""

    def __init__(
        self,
        config: Config,
        loop: asyncio.AbstractEventLoop,
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.loop = loop
        self.rng = rng if rng is not None else random.Random(config.close.seed)
        self.connections: set[ClientProtocol] = set()
        self.draining = False  # every response announces close
        self.stopping = False  # a shutdown has begun: /readyz fails
        self.serving = False  # the listeners are bound
        self.stats = Stats()
        self.upstreams = UpstreamGroup(config, loop, self.stats)
        self.balancer = self.upstreams.balancer  # picks the backend of each exchange
        self.metrics = metrics
        self.now = loop.time()  # coarse clock for deadlines, refreshed by sweep()
        # Unix time minus loop time: converts the epoch, a wall-clock time, to the loop's clock.
        self.wall_offset = time.time() - loop.time()
        self.epoch: float | None = None  # the migration epoch, Unix time
        self.epoch_args: tuple[float | None, float | None] = (None, None)  # (epoch, closes_from)
        # Told of every epoch set_epoch starts (a worker shares it with its siblings).
        self.epoch_listener: Callable[[float | None, float | None], None] | None = None
        # Starts the epoch a reload configures ([migration] epoch changed): set_epoch, or in a
        # worker, what decides between it and the epoch its siblings have.
        self.configured_epoch: Callable[[float | None], None] = self.set_epoch
        # The same on the loop's clock: connections opened before it are stale (-inf: none is).
        self.epoch_at = -math.inf
        self.returning = ReturningClients(
            config.close.returning_window, config.close.returning_max_backoff
        )
        self._ramp: tuple[float, float, float, float] | None = None  # old, new, start, seconds
        self._epoch_closes_at = -math.inf  # loop time from which the epoch policy closes
        self._budget: tuple[float, int] | None = None  # the close budget self.gate enforces
        self._apply(config)
        self._set_epoch(config.migration.epoch.at)

    def _apply(self, config: Config) -> None:
        """Make `config` the one in force (everything but the epoch and the ramp)."""
        if config.close.seed != self.config.close.seed:
            self.rng.seed(config.close.seed)  # a new seed restarts the draws, as at start
        self.config = config
        self.rules = ForwardingRules(
            forwarded=config.proxy.forwarded,
            via=config.proxy.via,
            default_host=str(config.upstream.address).encode("ascii"),
        )
        close = config.close
        self.policy = _policy(close, close.ratio)
        self._step_epoch_hold()
        self.dry_run = close.dry_run
        self.returning.configure(close.returning_window, close.returning_max_backoff)
        budget = (close.max_closes_per_second, close.max_closes_per_client_per_minute)
        if budget != self._budget:  # a reload that keeps the budget keeps its tokens
            self._budget = budget
            self.gate = CloseGate(*budget, self.returning)
        self.access_log = config.log.access_log
        logging.getLogger("migproxy").setLevel(config.log.level.upper())
        # Timeouts, read on every exchange: copied out of the config once.
        self.head_timeout = config.limits.head_timeout
        self.body_timeout = config.limits.body_timeout
        self.keepalive_timeout = min(
            config.limits.keepalive_timeout, close.idle_timeout or math.inf
        )
        self.response_timeout = config.upstream.response_timeout
        self.linger = close.linger
        self.sweep_every = sweep_interval(config)
        # Unset: 30 s, or linger if that is longer (configs that predate the key stay valid).
        self.linger_max = (
            close.linger_max if close.linger_max is not None else max(30.0, close.linger)
        )
        self.upstreams.reconfigure(config)
        if self.metrics is not None:
            self.metrics.close_ratio.set(self.policy.ratio)

    def apply_config(self, config: Config) -> None:
        """A reload: apply `config` (already validated, and reloadable: see control.py).

        Connections see the new policies at their next response. A new ratio is reached at
        once, or over close.ramp_seconds; a changed [migration] epoch starts a new epoch.
        """
        old = self.config
        ratio = self.policy.ratio  # in force now, part way through a ramp perhaps
        self._apply(config)
        if config.close.ratio != old.close.ratio:
            self._ramp = None
            if config.close.ramp_seconds > 0:
                self._ramp = (ratio, config.close.ratio, self.now, config.close.ramp_seconds)
        self._step_ramp()  # a ramp in progress goes on through a reload of other keys
        if config.migration.epoch.text != old.migration.epoch.text:
            self.configured_epoch(config.migration.epoch.at)

    def set_epoch(self, epoch: float | None, closes_from: float | None = None) -> None:
        """Start a migration epoch at Unix time `epoch` (None: no epoch).

        Connections opened before it are stale at once; the epoch policy closes them from
        Unix time `closes_from` on (None: at once), e.g. when the clients' DNS caches expire.
        The epoch in force already is not started again.
        """
        if (epoch, closes_from) == self.epoch_args:
            return
        self._set_epoch(epoch, closes_from)
        # Back-offs earned under the old DNS split would hold the new epoch's closes.
        self.returning.forget()
        log.info(
            "migration epoch %s%s",
            "cleared" if epoch is None else _utc(epoch),
            f", closing stale connections from {_utc(closes_from)}" if closes_from else "",
        )
        if self.epoch_listener is not None:
            self.epoch_listener(epoch, closes_from)

    def _set_epoch(self, epoch: float | None, closes_from: float | None = None) -> None:
        self.epoch_args = (epoch, closes_from)
        self.epoch = epoch
        self.epoch_at = -math.inf if epoch is None else epoch - self.wall_offset
        self._epoch_closes_at = -math.inf if closes_from is None else closes_from - self.wall_offset
        self._step_epoch_hold()
        if self.metrics is not None:
            self.metrics.migration_epoch.set(epoch or 0)

    def _step_epoch_hold(self) -> None:
        """Give the policy the epoch once its closes may start (see set_epoch)."""
        wanted = None if self.epoch is None or self.now < self._epoch_closes_at else self.epoch_at
        if self.policy.epoch != wanted:
            self.policy = dataclasses.replace(self.policy, epoch=wanted)

    def _step_ramp(self) -> None:
        if self._ramp is None:
            return
        old, new, start, seconds = self._ramp
        ratio = ramped_ratio(old, new, start, seconds, self.now)
        if ratio == new:
            self._ramp = None
        self.policy = dataclasses.replace(self.policy, ratio=ratio)
        if self.metrics is not None:
            self.metrics.close_ratio.set(ratio)

    def count_reload(self, ok: bool) -> None:
        if self.metrics is not None:
            self.metrics.reloads["ok" if ok else "error"].inc()
            if ok:
                self.metrics.last_reload_success.set_to_current_time()

    def migration_state(self) -> dict[str, object]:
        """The migration as the admin API shows it."""
        close = self.config.close
        return {
            "epoch": self.epoch,
            "epoch_closes_from": None
            if self._epoch_closes_at == -math.inf
            else self._epoch_closes_at + self.wall_offset,
            "epoch_age_seconds": None if self.epoch is None else time.time() - self.epoch,
            "ratio": self.policy.ratio,
            "ratio_target": close.ratio,
            "dry_run": self.dry_run,
            "policies": {
                "max_age": close.max_age,
                "max_age_jitter": close.max_age_jitter,
                "max_requests": close.max_requests,
                "epoch_ratio": close.epoch_ratio,
                "idle_timeout": close.idle_timeout,
            },
            "budget": {
                "max_closes_per_second": close.max_closes_per_second,
                "max_closes_per_client_per_minute": close.max_closes_per_client_per_minute,
            },
            "returning": [
                dataclasses.asdict(client) for client in self.returning.top(20, self.now)
            ],
        }

    def release_upstream(self, conn: UpstreamConnection) -> None:
        """Return `conn` to its pool after an exchange, or close it if it cannot be reused."""
        self.upstreams.release(conn, self.now, self.draining)

    def sweep(self) -> None:
        """Fire the deadlines that have passed; close idle upstream connections too old."""
        now = self.now = self.loop.time()
        self._step_ramp()
        self._step_epoch_hold()
        for conn in [c for c in self.connections if c.deadline <= now]:
            conn.deadline_passed(now)
        epoch_at = self.epoch_at
        self.stats.active_stale = (
            sum(1 for c in self.connections if c.opened_at < epoch_at) if self.epoch else 0
        )
        self.upstreams.sweep(now)
        if self.metrics is not None:
            flush(self.stats, self.metrics)

    def set_draining(self) -> None:
        """From now on every response announces close, and idle connections are closed."""
        self.draining = True
        self.now = self.loop.time()
        idle_grace = self.config.drain.idle_grace
        for conn in list(self.connections):
            conn.shutdown(idle_grace)
        self.upstreams.drain()


def sweep_interval(config: Config) -> float:
    """How often deadlines are checked: a quarter of the shortest timeout, at most 1 s."""
    shortest = min(
        config.limits.head_timeout,
        config.limits.keepalive_timeout,
        config.limits.body_timeout,
        config.upstream.response_timeout,
        config.upstream.idle_timeout,
        config.close.idle_timeout or math.inf,
        config.close.linger or 1.0,
    )
    return max(0.02, min(1.0, shortest / 4))


def _utc(unix: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix))


def _policy(close: CloseConfig, ratio: float) -> ClosePolicy:
    """The policies of `close`, without the epoch (ProxyContext adds it when it applies)."""
    scope = close.scope
    return ClosePolicy(
        ratio=ratio,
        max_age=close.max_age,
        max_age_jitter=close.max_age_jitter,
        max_requests=close.max_requests,
        epoch_ratio=close.epoch_ratio,
        scope=Scope(
            hosts=frozenset(host.encode("ascii") for host in scope.hosts),
            path_prefixes=tuple(path.encode("ascii") for path in scope.paths),
            networks=scope.clients,
        )
        if scope.hosts or scope.paths or scope.clients
        else None,
    )
