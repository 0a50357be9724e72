# The ratio ramp: after a change, the injected ratio moves linearly from its old value to its
# new one over `ramp_seconds`, instead of stepping, so that a raised ratio does not send a
# reconnect storm to the new VIP. Pure: the caller passes `now` and the time of the change.
from __future__ import annotations


def ramped_ratio(old: float, new: float, started: float, duration: float, now: float) -> float:
    """The ratio in force at `now`, on a linear ramp from `old` to `new`.

    Args:
        old: the ratio before the change.
        new: the ratio after it.
        started: when the change was made, on the caller's clock.
        duration: the ramp's length in seconds; 0 (or less) = a step.
        now: the current time, on the same clock.

    Returns:
        old before `started`, new from started + duration on, and the linear interpolation in
        between (a ramp down works the same way).
    """
    if duration <= 0.0 or now >= started + duration:
        return new
    if now <= started:
        return old
    return old + (new - old) * ((now - started) / duration)
