# The close decision: the only place that decides whether a response announces
# `Connection: close`. Pure: facts and a random draw in, a CloseDecision out.
#
# Rules (DESIGN.md §2):
# - The decision is made per final response, before its head is written, and announced in that
#   head; a keep-alive connection is never closed silently while a client may be sending.
# - Never decided for 1xx or 101 responses, nor inside tunnels: callers do not ask.
# - One close, one reason, first match wins, in the order of REASON_ORDER below.
from __future__ import annotations

import enum
from dataclasses import dataclass

from migproxy.http1.events import BodyKind


class CloseReason(enum.Enum):
    """Why a client connection closes; the values are metric label values."""

    DRAIN = "drain"  # the proxy is shutting down
    CLIENT = "client"  # the client asked (Connection: close, or HTTP/1.0 without keep-alive)
    UPSTREAM = "upstream"  # the response can only be delimited by closing the connection
    ERROR = "error"  # the exchange cannot continue on this connection (e.g. early response)
    RATIO = "ratio"  # injected: a random share of responses
    IDLE_TIMEOUT = "idle_timeout"  # closed while idle (never announced: see server code)


# The reasons that are migration policies (a close injected into a connection that could have
# stayed open); the other reasons are protocol or lifecycle closes.
POLICY_REASONS = (CloseReason.RATIO,)


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
    """The configured injection policies. `ratio` is the probability per response."""

    ratio: float = 0.0


def decide_close(
    *,
    client_keep_alive: bool,
    required: CloseReason | None,
    draining: bool,
    policy: ClosePolicy,
    draw: float,
) -> CloseDecision:
    """Decide whether the final response about to be sent announces `Connection: close`.

    Args:
        client_keep_alive: the client's request allows the connection to stay open.
        required: a reason that forces a close whatever the policies say, or None.
        draining: the proxy is shutting down.
        policy: the injection policies in force.
        draw: a uniform random number in [0, 1) from the connection's injected Random.

    Returns:
        KEEP_OPEN, or a CloseDecision naming the first reason that applies.
    """
    if draining:
        return _REQUIRED[CloseReason.DRAIN]
    if not client_keep_alive:
        return _REQUIRED[CloseReason.CLIENT]
    if required is not None:
        return _REQUIRED[required]
    if draw < policy.ratio:
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
