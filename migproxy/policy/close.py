# The close decision: the only place that decides whether a response announces
# `Connection: close`. Pure: facts, `now` and a random source in, a CloseDecision out.
#
# Rules (DESIGN.md §2, issue #5):
# - The decision is made per final response, before its head is written, and announced in that
#   head; a keep-alive connection is never closed silently while a client may be sending.
# - Never decided for 1xx or 101 responses, nor inside tunnels: callers do not ask.
# - One close, one reason, first match wins, in this order:
#   drain > client > required (upstream, error) > max_age > max_requests > epoch > ratio.
#   The first three are required closes; the last four are injected by a migration policy and
#   apply only to requests in the policy's scope.
# - idle_timeout is the only close not announced in a response: the adapter's timers close a
#   connection that stayed idle, so it never comes through here (it only needs the reason).
# - Injected closes may still be deferred by the close budget or the returning-client back-off
#   (policy/gate.py); a deferred close is decided again at the next response. Drain never is.
# - Randomness is drawn only when a probability strictly between 0 and 1 has to be tested, so
#   a proxy with no injection policy pays no draw per response.
from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from migproxy.http1.events import BodyKind
from migproxy.policy.scope import Scope


class CloseReason(enum.Enum):
    """Why a client connection closes; the values are metric label values."""

    DRAIN = "drain"  # the proxy is shutting down
    CLIENT = "client"  # the client asked (Connection: close, or HTTP/1.0 without keep-alive)
    UPSTREAM = "upstream"  # the response can only be delimited by closing the connection
    ERROR = "error"  # the exchange cannot continue on this connection (e.g. early response)
    MAX_AGE = "max_age"  # injected: the connection outlived max_age (+ its jitter)
    MAX_REQUESTS = "max_requests"  # injected: the connection served max_requests requests
    EPOCH = "epoch"  # injected: the connection predates the current migration epoch
    RATIO = "ratio"  # injected: a random share of responses
    IDLE_TIMEOUT = "idle_timeout"  # closed while idle (never announced: see server code)


# The reasons that are migration policies (a close injected into a connection that could have
# stayed open), in their order of precedence; the other reasons are protocol or lifecycle closes.
POLICY_REASONS = (
    CloseReason.MAX_AGE,
    CloseReason.MAX_REQUESTS,
    CloseReason.EPOCH,
    CloseReason.RATIO,
)


@dataclass(frozen=True, slots=True)
class CloseDecision:
    """Whether to announce `Connection: close`, and why.

    `injected` is True when migproxy chose to close a connection that could have stayed open
    (a migration policy), False when HTTP or the client required it.
    """

    close: bool
    reason: CloseReason | None = None
    injected: bool = False


KEEP_OPEN = CloseDecision(False)
_REQUIRED = {reason: CloseDecision(True, reason) for reason in CloseReason}
_INJECTED = {reason: CloseDecision(True, reason, injected=True) for reason in CloseReason}


@dataclass(frozen=True, slots=True)
class ClosePolicy:
    """The configured injection policies, each off at its default.

    Times are on the caller's monotonic clock, the one that gives `now` to decide_close.
    A policy is replaced whole on reload (dataclasses.replace); it is never mutated.

    Raises:
        ValueError: a probability outside [0, 1] or a negative limit.
    """

    ratio: float = 0.0  # probability per response
    max_age: float = 0.0  # seconds, 0 = off
    max_age_jitter: float = 0.0  # seconds: each connection's limit is max_age + uniform(0, jitter)
    max_requests: int = 0  # requests per connection, 0 = off
    epoch: float | None = None  # connections opened before it are stale; None = no epoch
    epoch_ratio: float = 1.0  # probability per response that a stale connection is closed
    scope: Scope | None = None  # None = every request is in scope
    # Precomputed so that the per-response path can skip work: `per_connection` is True when a
    # policy reads the connection's age, request count or opening time (max_age, max_requests,
    # epoch), and `active` when any policy can inject a close at all (those, or ratio > 0).
    per_connection: bool = field(init=False, repr=False, compare=False)
    active: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("ratio", "epoch_ratio"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
        for name in ("max_age", "max_age_jitter", "max_requests"):
            value = getattr(self, name)
            if not value >= 0:  # also rejects NaN
                raise ValueError(f"{name} must not be negative, got {value!r}")
        per_connection = (
            self.max_age > 0.0
            or self.max_requests > 0
            or (self.epoch is not None and self.epoch_ratio > 0.0)
        )
        # Frozen: the derived fields are set once, here.
        object.__setattr__(self, "per_connection", per_connection)
        object.__setattr__(self, "active", per_connection or self.ratio > 0.0)


def age_limit(policy: ClosePolicy, opened_at: float, draw: float) -> float:
    """The time after which max_age closes this connection; drawn once per connection.

    The jitter spreads the closes of connections opened together (a reconnect storm, a restart)
    so that they do not all come due in the same second again (hypercorn's max_requests_jitter).

    Args:
        policy: the policies in force.
        opened_at: when the connection was accepted.
        draw: a uniform random number in [0, 1), drawn when the connection was accepted.

    Returns:
        opened_at + max_age + draw * max_age_jitter, on the caller's clock; math.inf when
        max_age is off.
    """
    if policy.max_age <= 0.0:
        return math.inf
    return opened_at + policy.max_age + draw * policy.max_age_jitter


def _chance(probability: float, rng: Callable[[], float]) -> bool:
    """True with the given probability; draws only when the answer is not certain."""
    if probability >= 1.0:
        return True
    return probability > 0.0 and rng() < probability


def decide_close(
    *,
    client_keep_alive: bool,
    required: CloseReason | None,
    draining: bool,
    policy: ClosePolicy,
    now: float,
    opened_at: float,
    age_limit: float,
    requests: int,
    in_scope: bool,
    rng: Callable[[], float],
) -> CloseDecision:
    """Decide whether the final response about to be sent announces `Connection: close`.

    Args:
        client_keep_alive: the client's request allows the connection to stay open.
        required: a reason that forces a close whatever the policies say, or None.
        draining: the proxy is shutting down.
        policy: the injection policies in force.
        now: the current time on the caller's monotonic clock.
        opened_at: when the connection was accepted, on the same clock.
        age_limit: this connection's age_limit(policy, opened_at, draw); max_age closes it
            from that time on (now >= age_limit).
        requests: the requests served on this connection, the current one included; max_requests
            closes it at requests >= max_requests.
        in_scope: the request matches policy.scope (True when there is no scope); the injection
            policies apply only to requests in scope.
        rng: uniform random numbers in [0, 1) from the proxy's injected Random; called only to
            test a probability strictly between 0 and 1 (epoch_ratio for a stale connection,
            then ratio), at most twice.

    Returns:
        KEEP_OPEN, or a CloseDecision naming the first reason that applies: drain, client,
        required, then the injected max_age, max_requests, epoch (a connection opened before
        policy.epoch, with probability epoch_ratio at each response) and ratio.
    """
    if draining:
        return _REQUIRED[CloseReason.DRAIN]
    if not client_keep_alive:
        return _REQUIRED[CloseReason.CLIENT]
    if required is not None:
        return _REQUIRED[required]
    if not in_scope:
        return KEEP_OPEN
    if policy.per_connection:
        # max_age > 0 is tested too: a limit drawn under an older policy must not outlive a
        # reload that turned max_age off.
        if policy.max_age > 0.0 and now >= age_limit:
            return _INJECTED[CloseReason.MAX_AGE]
        if 0 < policy.max_requests <= requests:
            return _INJECTED[CloseReason.MAX_REQUESTS]
        epoch = policy.epoch
        if epoch is not None and opened_at < epoch and _chance(policy.epoch_ratio, rng):
            return _INJECTED[CloseReason.EPOCH]
    ratio = policy.ratio  # inlined _chance: the common path is ratio 0, with no call at all
    if ratio > 0.0 and (ratio >= 1.0 or rng() < ratio):
        return _INJECTED[CloseReason.RATIO]
    return KEEP_OPEN


def required_close(
    *,
    response_body: BodyKind,
    client_version: int,
    request_complete: bool,
    awaiting_continue: bool,
) -> CloseReason | None:
    """The close HTTP itself requires after a final response, whatever the policies say.

    Args:
        response_body: how the upstream delimits the response body.
        client_version: 10 or 11.
        request_complete: the whole request body has been received.
        awaiting_continue: the client sent `Expect: 100-continue` and got no 100 yet.

    Returns:
        ERROR when the request body may never come (RFC 9110 §10.1.1: a client still waiting
        for 100 may not send it, so an early final response must say the connection will not
        be read further); UPSTREAM when only closing can end the body for this client (a
        close-delimited response, or chunked to an HTTP/1.0 client); else None.
    """
    if awaiting_continue and not request_complete:
        return CloseReason.ERROR
    if response_body is BodyKind.UNTIL_CLOSE or (
        response_body is BodyKind.CHUNKED and client_version == 10
    ):
        return CloseReason.UPSTREAM
    return None
