# The close gate: whether an injected close decided now may be sent now, or must wait.
# Pure: the caller passes `now` (seconds on its monotonic clock) and nothing here reads a clock.
#
# Rules (issue #5):
# - Only injected closes are asked about. Drain, client and HTTP-required closes never come
#   here: drain ignores the budget, and the others cannot be put off.
# - A close that is held is not lost: the connection stays open, the caller counts the Hold,
#   and decide_close decides again at the connection's next response (max_age, max_requests
#   and epoch still hold then; ratio draws again).
# - The returning-client back-off is asked first, then the per-client limit and the proxy's
#   token bucket; tokens are taken only when every one of them admits the close, so a held
#   close costs no budget.
from __future__ import annotations

import enum

from migproxy.policy.budget import ClientCloseLimit, TokenBucket
from migproxy.policy.returning import ReturningClients


class Hold(enum.Enum):
    """Why an injected close was deferred; the values are metric label values."""

    BUDGET = "budget_denied"  # the proxy's or the client's close budget is spent
    RETURNING = "returning_backoff"  # the client came back after a recent close


class CloseGate:
    """The close budget and the returning-client back-off, asked together.

    Args:
        per_second: max_closes_per_second for the whole proxy, 0 = unlimited.
        per_client_per_minute: max_closes_per_client_per_minute, 0 = unlimited.
        returning: the returning-client table, or None for no back-off.
        burst: the token bucket's burst (default max(1, per_second)).
        capacity: how many client addresses the per-client limit remembers.
    """

    __slots__ = ("bucket", "per_client", "returning")

    def __init__(
        self,
        per_second: float,
        per_client_per_minute: float,
        returning: ReturningClients | None = None,
        *,
        burst: float | None = None,
        capacity: int = 10_000,
    ) -> None:
        self.bucket = TokenBucket(per_second, burst)
        self.per_client = ClientCloseLimit(per_client_per_minute, capacity)
        self.returning = returning

    def admit(self, client: bytes, now: float) -> Hold | None:
        """Admit an injected close to `client` now (taking its tokens), or say why it waits.

        Returns:
            None when the close may be sent (the budgets are charged for it), else the Hold.
            The returning table is not told here: call returning.closed() when the close is
            carried out, since the client's reconnect follows the close, not the decision.
        """
        returning = self.returning
        if returning is not None and returning.held(client, now):
            return Hold.RETURNING
        if not (self.bucket.can_take(now) and self.per_client.can_take(client, now)):
            return Hold.BUDGET
        self.bucket.take(now)
        self.per_client.take(client, now)
        return None

    def __repr__(self) -> str:
        return f"<CloseGate {self.bucket!r} {self.per_client!r} {self.returning!r}>"
