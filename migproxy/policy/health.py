# Health of one upstream address, judged from active checks. Pure: outcomes and measured lags
# in, states and verdicts out; the prober (upstream/health.py) does the I/O and reads the clock.
#
# Rules (issue #4):
# - An address is ejected only after `fall` consecutive failed checks and readmitted only after
#   `rise` consecutive successful ones; a single bad answer never ejects an address when
#   fall >= 2, however the answers alternate.
# - A check that timed out while the proxy itself was late is inconclusive and recorded nowhere:
#   it says nothing about the backend. The incident this guards against: a heartbeat probe sent
#   13 s late was judged against a 1 s timeout, and a healthy connection was torn down.
from __future__ import annotations

# A timed-out check is trusted only if the proxy was on time to within this share of the
# check's timeout. Past it, the backend may well have answered in time while the event loop
# was blocked (uvloop even runs due timers before it polls for I/O, so an answer waiting in
# the socket loses to the timeout that fires in the same iteration). A share of the timeout,
# not a fixed delay, keeps the rule the same for a 50 ms check and a 5 s one.
LATE_FRACTION = 0.25


def is_inconclusive(
    *, timed_out: bool, timeout: float, start_lag: float, deadline_lag: float
) -> bool:
    """Whether a check's verdict must be discarded because the proxy, not the backend, was late.

    Loop lag is the actual wake time minus the scheduled wake time of a timer. Only a timeout
    can be inconclusive: a refused connection or an error status is the backend's own answer,
    however late the proxy was to read it, and so is an answer that did arrive.

    Args:
        timed_out: the check ran out of its timeout (connect and answer together).
        timeout: the check's timeout in seconds.
        start_lag: how late the event loop woke the check, against its schedule.
        deadline_lag: how late the timeout itself fired (the loop was blocked across the
            deadline, so answers that arrived meanwhile were never read).

    Returns:
        True when the timeout was not the backend's fault beyond doubt.
    """
    return timed_out and max(start_lag, deadline_lag) > LATE_FRACTION * timeout


class HealthState:
    """Ejected or admitted, from consecutive check outcomes (HAProxy's rise and fall).

    An address starts healthy: a freshly resolved address is presumed up, as HAProxy presumes
    of its servers by default, so that new addresses take traffic at once; the first check
    runs immediately and an address that is in fact down is ejected after `fall` failures.
    """

    __slots__ = ("rise", "fall", "healthy", "consecutive_successes", "consecutive_failures")

    def __init__(self, rise: int, fall: int) -> None:
        if rise < 1 or fall < 1:
            raise ValueError(f"rise and fall must be at least 1, got rise={rise} fall={fall}")
        self.rise = rise
        self.fall = fall
        self.healthy = True
        self.consecutive_successes = 0
        self.consecutive_failures = 0

    def record(self, ok: bool) -> bool | None:
        """Record one conclusive check outcome (never an inconclusive one).

        Returns:
            The new state on a transition (True: readmitted, False: ejected), else None.
        """
        if ok:
            self.consecutive_successes += 1
            self.consecutive_failures = 0
            if not self.healthy and self.consecutive_successes >= self.rise:
                self.healthy = True
                return True
        else:
            self.consecutive_failures += 1
            self.consecutive_successes = 0
            if self.healthy and self.consecutive_failures >= self.fall:
                self.healthy = False
                return False
        return None

    def __repr__(self) -> str:
        state = "healthy" if self.healthy else "ejected"
        return (
            f"<HealthState {state} successes={self.consecutive_successes}/{self.rise}"
            f" failures={self.consecutive_failures}/{self.fall}>"
        )
