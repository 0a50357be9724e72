# Pure tests of migproxy.policy.close: the close decision as a table of facts -> decision,
# first match wins (drain > client > required > max_age > max_requests > epoch > ratio), the
# injection policies only in scope, draws only when a probability is uncertain (a scripted rng
# says which), and the injected share measured over a seeded Random so that it is deterministic.
from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable
from typing import Any

import pytest

from migproxy.http1.events import BodyKind
from migproxy.policy.close import (
    KEEP_OPEN,
    POLICY_REASONS,
    CloseDecision,
    ClosePolicy,
    CloseReason,
    age_limit,
    decide_close,
    required_close,
)

DRAIN = CloseDecision(True, CloseReason.DRAIN)
CLIENT = CloseDecision(True, CloseReason.CLIENT)
UPSTREAM = CloseDecision(True, CloseReason.UPSTREAM)
ERROR = CloseDecision(True, CloseReason.ERROR)
RATIO = CloseDecision(True, CloseReason.RATIO, injected=True)
MAX_AGE = CloseDecision(True, CloseReason.MAX_AGE, injected=True)
MAX_REQUESTS = CloseDecision(True, CloseReason.MAX_REQUESTS, injected=True)
EPOCH = CloseDecision(True, CloseReason.EPOCH, injected=True)

LAST_DRAW = 0.999  # close to the largest value random.random() returns


class ScriptedRng:
    """An rng returning the given draws in order; fails the test if asked for one more."""

    def __init__(self, *draws: float) -> None:
        self.draws = list(draws)
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        assert self.draws, "rng called when no draw was expected"
        return self.draws.pop(0)


def no_draw() -> float:
    raise AssertionError("rng called when no draw was needed")


def decide(policy: ClosePolicy, rng: Callable[[], float] = no_draw, **facts: Any) -> CloseDecision:
    """decide_close for a keep-alive connection opened at 0, one request old, in scope at 10."""
    args: dict[str, Any] = {
        "client_keep_alive": True,
        "required": None,
        "draining": False,
        "now": 10.0,
        "opened_at": 0.0,
        "requests": 1,
        "in_scope": True,
    }
    args.update(facts)
    args.setdefault("age_limit", age_limit(policy, args["opened_at"], 0.0))
    return decide_close(policy=policy, rng=rng, **args)


@pytest.mark.parametrize(
    ("client_keep_alive", "required", "draining", "ratio", "draw", "expected"),
    [
        # Nothing applies.
        pytest.param(True, None, False, 0.0, 0.0, KEEP_OPEN, id="ratio-0-draw-0"),
        pytest.param(True, None, False, 0.0, LAST_DRAW, KEEP_OPEN, id="ratio-0-draw-max"),
        pytest.param(True, None, False, 0.5, 0.5, KEEP_OPEN, id="draw-equal-to-ratio"),
        pytest.param(True, None, False, 0.1, LAST_DRAW, KEEP_OPEN, id="draw-above-ratio"),
        # Ratio: draw < ratio injects.
        pytest.param(True, None, False, 1.0, 0.0, RATIO, id="ratio-1-draw-0"),
        pytest.param(True, None, False, 1.0, LAST_DRAW, RATIO, id="ratio-1-draw-max"),
        pytest.param(True, None, False, 0.1, 0.0, RATIO, id="ratio-01-draw-0"),
        pytest.param(True, None, False, 0.5, 0.4999, RATIO, id="draw-just-below-ratio"),
        # Required reasons beat the ratio, whatever the draw.
        pytest.param(True, CloseReason.UPSTREAM, False, 0.0, LAST_DRAW, UPSTREAM, id="upstream"),
        pytest.param(True, CloseReason.ERROR, False, 0.0, LAST_DRAW, ERROR, id="error"),
        pytest.param(True, CloseReason.UPSTREAM, False, 1.0, 0.0, UPSTREAM, id="upstream>ratio"),
        pytest.param(True, CloseReason.ERROR, False, 1.0, 0.0, ERROR, id="error>ratio"),
        # The client beats required reasons and the ratio.
        pytest.param(False, None, False, 0.0, LAST_DRAW, CLIENT, id="client"),
        pytest.param(False, None, False, 1.0, 0.0, CLIENT, id="client>ratio"),
        pytest.param(False, CloseReason.UPSTREAM, False, 0.0, 0.0, CLIENT, id="client>required"),
        pytest.param(False, CloseReason.ERROR, False, 1.0, 0.0, CLIENT, id="client>all-but-drain"),
        # Draining beats everything.
        pytest.param(True, None, True, 0.0, LAST_DRAW, DRAIN, id="drain"),
        pytest.param(True, None, True, 1.0, 0.0, DRAIN, id="drain>ratio"),
        pytest.param(True, CloseReason.ERROR, True, 0.0, 0.0, DRAIN, id="drain>required"),
        pytest.param(False, None, True, 0.0, 0.0, DRAIN, id="drain>client"),
        pytest.param(False, CloseReason.UPSTREAM, True, 1.0, 0.0, DRAIN, id="drain>all"),
    ],
)
def test_decide_close(
    client_keep_alive: bool,
    required: CloseReason | None,
    draining: bool,
    ratio: float,
    draw: float,
    expected: CloseDecision,
) -> None:
    decision = decide(
        ClosePolicy(ratio=ratio),
        lambda: draw,
        client_keep_alive=client_keep_alive,
        required=required,
        draining=draining,
    )
    assert decision == expected


@pytest.mark.parametrize("reason", list(CloseReason))
def test_required_reason_is_passed_through_not_injected(reason: CloseReason) -> None:
    decision = decide(ClosePolicy(ratio=0.5), ScriptedRng(0.0), required=reason)
    assert decision == CloseDecision(True, reason, injected=False)


def test_only_the_policies_are_injected() -> None:
    assert all(d.injected for d in (MAX_AGE, MAX_REQUESTS, EPOCH, RATIO))
    assert [d.reason for d in (MAX_AGE, MAX_REQUESTS, EPOCH, RATIO)] == list(POLICY_REASONS)
    assert not any(d.injected for d in (DRAIN, CLIENT, UPSTREAM, ERROR, KEEP_OPEN))


def test_keep_open() -> None:
    assert KEEP_OPEN == CloseDecision(False)
    assert KEEP_OPEN.reason is None
    assert KEEP_OPEN.injected is False


def test_decisions_and_policies_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        KEEP_OPEN.close = True  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ClosePolicy().ratio = 1.0  # type: ignore[misc]


def test_default_policy_never_injects() -> None:
    assert ClosePolicy().ratio == 0.0


def test_reason_values_are_unique_label_values() -> None:
    values = [reason.value for reason in CloseReason]
    assert len(set(values)) == len(values)
    assert all(v.isascii() and v == v.lower() and " " not in v for v in values)


@pytest.mark.parametrize("seed", [0, 1, 20240601])
def test_injected_share_matches_the_ratio(seed: int) -> None:
    # Deterministic for a given seed; the bound is about 5 standard deviations
    # (sqrt(0.1 * 0.9 / 20000) is about 0.0021), so any reasonable seed passes.
    rng = random.Random(seed)
    policy = ClosePolicy(ratio=0.1)
    draws = 20_000
    injected = 0
    for _ in range(draws):
        decision = decide(policy, rng.random)
        if decision.close:
            assert decision == RATIO
            injected += 1
    assert abs(injected / draws - 0.1) <= 0.015


@pytest.mark.parametrize(
    ("body", "version", "complete", "awaiting", "expected"),
    [
        pytest.param(BodyKind.LENGTH, 11, True, False, None, id="length-done"),
        pytest.param(BodyKind.NONE, 11, True, False, None, id="no-body"),
        pytest.param(BodyKind.CHUNKED, 11, True, False, None, id="chunked-to-11"),
        pytest.param(BodyKind.CHUNKED, 10, True, False, CloseReason.UPSTREAM, id="chunked-to-10"),
        pytest.param(BodyKind.UNTIL_CLOSE, 11, True, False, CloseReason.UPSTREAM, id="until-close"),
        pytest.param(BodyKind.LENGTH, 11, False, False, None, id="early-response-keeps"),
        pytest.param(BodyKind.LENGTH, 11, False, True, CloseReason.ERROR, id="early-no-100"),
        pytest.param(BodyKind.LENGTH, 11, True, True, None, id="continue-body-done"),
        pytest.param(BodyKind.UNTIL_CLOSE, 11, False, True, CloseReason.ERROR, id="error-first"),
    ],
)
def test_required_close(
    body: BodyKind, version: int, complete: bool, awaiting: bool, expected: CloseReason | None
) -> None:
    got = required_close(
        response_body=body,
        client_version=version,
        request_complete=complete,
        awaiting_continue=awaiting,
    )
    assert got is expected


# The injection policies. Each row: the policy, the facts that differ from decide()'s defaults
# (a keep-alive connection opened at 0, its first request, in scope, at now=10), the draws the
# rng hands out (all of them must be used, and no more), and the decision.
STALE = {"opened_at": 0.0}  # before the epoch of 5.0 used below
ALL_ON = {"max_age": 5.0, "max_requests": 1, "epoch": 50.0, "ratio": 1.0}


@pytest.mark.parametrize(
    ("policy", "facts", "draws", "expected"),
    [
        # Nothing configured: no close, no draw.
        pytest.param({}, {}, (), KEEP_OPEN, id="default-policy"),
        pytest.param({}, {"requests": 10**6, "now": 1e9}, (), KEEP_OPEN, id="default-old-busy"),
        # max_age: from opened_at + max_age on (no jitter here; see test_age_limit).
        pytest.param({"max_age": 5.0}, {"now": 4.999}, (), KEEP_OPEN, id="max-age-young"),
        pytest.param({"max_age": 5.0}, {"now": 5.0}, (), MAX_AGE, id="max-age-at-limit"),
        pytest.param({"max_age": 5.0}, {"now": 500.0}, (), MAX_AGE, id="max-age-old"),
        pytest.param({"max_age": 5.0}, {"now": 7.0, "opened_at": 3.0}, (), KEEP_OPEN, id="age"),
        # A limit drawn under an older policy does not outlive a reload that turned max_age off.
        pytest.param({"max_requests": 9}, {"age_limit": 1.0}, (), KEEP_OPEN, id="max-age-off"),
        # max_requests: counts the current request.
        pytest.param({"max_requests": 3}, {"requests": 2}, (), KEEP_OPEN, id="max-requests-2of3"),
        pytest.param({"max_requests": 3}, {"requests": 3}, (), MAX_REQUESTS, id="max-requests-3"),
        pytest.param({"max_requests": 3}, {"requests": 4}, (), MAX_REQUESTS, id="max-requests-4"),
        pytest.param({"max_requests": 1}, {}, (), MAX_REQUESTS, id="max-requests-1-first"),
        # epoch: connections opened strictly before it, with probability epoch_ratio.
        pytest.param({"epoch": 5.0}, STALE, (), EPOCH, id="epoch-stale"),
        pytest.param({"epoch": 5.0}, {"opened_at": 4.999}, (), EPOCH, id="epoch-just-before"),
        pytest.param({"epoch": 5.0}, {"opened_at": 5.0}, (), KEEP_OPEN, id="epoch-opened-at-it"),
        pytest.param({"epoch": 5.0}, {"opened_at": 6.0}, (), KEEP_OPEN, id="epoch-current"),
        pytest.param({"epoch": 5.0, "epoch_ratio": 0.0}, STALE, (), KEEP_OPEN, id="epoch-ratio-0"),
        pytest.param({"epoch": 5.0, "epoch_ratio": 1.0}, STALE, (), EPOCH, id="epoch-ratio-1"),
        pytest.param(
            {"epoch": 5.0, "epoch_ratio": 0.0, "max_requests": 9}, STALE, (), KEEP_OPEN, id="e0"
        ),
        pytest.param({"epoch": 5.0, "epoch_ratio": 0.5}, STALE, (0.0,), EPOCH, id="half-draw-0"),
        pytest.param({"epoch": 5.0, "epoch_ratio": 0.5}, STALE, (0.4999,), EPOCH, id="half-below"),
        pytest.param({"epoch": 5.0, "epoch_ratio": 0.5}, STALE, (0.5,), KEEP_OPEN, id="half-equal"),
        pytest.param({"epoch": 5.0, "epoch_ratio": 0.5}, STALE, (0.9,), KEEP_OPEN, id="half-above"),
        # A current connection is not drawn for the epoch at all.
        pytest.param({"epoch": 5.0, "epoch_ratio": 0.5}, {"opened_at": 6.0}, (), KEEP_OPEN, id="e"),
        # A stale connection the epoch draw spares still has its ratio draw, a separate one.
        pytest.param(
            {"epoch": 5.0, "epoch_ratio": 0.5, "ratio": 0.5}, STALE, (0.7, 0.3), RATIO, id="2-draws"
        ),
        pytest.param(
            {"epoch": 5.0, "epoch_ratio": 0.5, "ratio": 0.5}, STALE, (0.7, 0.7), KEEP_OPEN, id="2x"
        ),
        # First match wins among the policies: max_age > max_requests > epoch > ratio.
        pytest.param(ALL_ON, {}, (), MAX_AGE, id="max-age>all"),
        pytest.param(ALL_ON, {"now": 1.0}, (), MAX_REQUESTS, id="max-requests>epoch+ratio"),
        pytest.param(ALL_ON | {"max_requests": 0}, {"now": 1.0}, (), EPOCH, id="epoch>ratio"),
        pytest.param(
            ALL_ON | {"max_requests": 0, "epoch_ratio": 0.5}, {"now": 1.0}, (0.1,), EPOCH, id="e>r"
        ),
        pytest.param(
            ALL_ON | {"max_requests": 0, "epoch": 0.0}, {"now": 1.0}, (), RATIO, id="ratio-last"
        ),
        # Required closes beat every policy, and need no draw.
        pytest.param(ALL_ON, {"required": CloseReason.UPSTREAM}, (), UPSTREAM, id="upstream>all"),
        pytest.param(ALL_ON, {"required": CloseReason.ERROR}, (), ERROR, id="error>all"),
        pytest.param(ALL_ON, {"client_keep_alive": False}, (), CLIENT, id="client>all"),
        pytest.param(ALL_ON, {"draining": True}, (), DRAIN, id="drain>all"),
        # Out of scope, no policy applies and nothing is drawn; required closes still do.
        pytest.param(ALL_ON, {"in_scope": False}, (), KEEP_OPEN, id="out-of-scope"),
        pytest.param({"ratio": 0.5}, {"in_scope": False}, (), KEEP_OPEN, id="out-of-scope-ratio"),
        pytest.param(
            ALL_ON, {"in_scope": False, "required": CloseReason.ERROR}, (), ERROR, id="oos-error"
        ),
        pytest.param(ALL_ON, {"in_scope": False, "draining": True}, (), DRAIN, id="oos-drain"),
        pytest.param(
            ALL_ON, {"in_scope": False, "client_keep_alive": False}, (), CLIENT, id="oos-client"
        ),
    ],
)
def test_decide_close_policies(
    policy: dict[str, Any],
    facts: dict[str, Any],
    draws: tuple[float, ...],
    expected: CloseDecision,
) -> None:
    rng = ScriptedRng(*draws)
    assert decide(ClosePolicy(**policy), rng, **facts) == expected
    assert rng.calls == len(draws)


@pytest.mark.parametrize(
    "policy",
    [
        pytest.param(ClosePolicy(), id="default"),
        pytest.param(ClosePolicy(ratio=1.0), id="ratio-1"),
        pytest.param(ClosePolicy(epoch=5.0), id="epoch-ratio-1"),
        pytest.param(ClosePolicy(epoch=5.0, epoch_ratio=0.0), id="epoch-ratio-0"),
        pytest.param(ClosePolicy(max_age=5.0, max_age_jitter=5.0, max_requests=9), id="limits"),
    ],
)
@pytest.mark.parametrize("stale", [False, True])
def test_no_draw_when_no_probability_is_uncertain(policy: ClosePolicy, stale: bool) -> None:
    # The common path of a proxy with ratio 0 costs no draw per response (no_draw fails if called).
    decide(policy, no_draw, now=1.0, opened_at=0.0 if stale else 6.0)


@pytest.mark.parametrize(
    ("policy", "per_connection", "active"),
    [
        pytest.param(ClosePolicy(), False, False, id="default"),
        pytest.param(ClosePolicy(ratio=0.1), False, True, id="ratio"),
        pytest.param(ClosePolicy(max_age=1.0), True, True, id="max-age"),
        pytest.param(ClosePolicy(max_requests=1), True, True, id="max-requests"),
        pytest.param(ClosePolicy(epoch=0.0), True, True, id="epoch"),
        pytest.param(ClosePolicy(epoch=0.0, epoch_ratio=0.0), False, False, id="epoch-ratio-0"),
        pytest.param(ClosePolicy(epoch_ratio=0.5), False, False, id="epoch-ratio-no-epoch"),
        pytest.param(
            dataclasses.replace(ClosePolicy(ratio=0.1), ratio=0.0, max_age=1.0),
            True,
            True,
            id="replaced",
        ),
    ],
)
def test_precomputed_flags(policy: ClosePolicy, per_connection: bool, active: bool) -> None:
    assert (policy.per_connection, policy.active) == (per_connection, active)


def test_flags_are_not_arguments_and_do_not_compare() -> None:
    with pytest.raises(TypeError):
        ClosePolicy(active=True)  # type: ignore[call-arg]
    assert ClosePolicy(ratio=0.5) == ClosePolicy(ratio=0.5)
    assert "active" not in repr(ClosePolicy())


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"ratio": -0.1}, id="ratio-negative"),
        pytest.param({"ratio": 1.01}, id="ratio-above-1"),
        pytest.param({"ratio": math.nan}, id="ratio-nan"),
        pytest.param({"epoch_ratio": 2.0}, id="epoch-ratio-above-1"),
        pytest.param({"max_age": -1.0}, id="max-age-negative"),
        pytest.param({"max_age_jitter": -1.0}, id="jitter-negative"),
        pytest.param({"max_requests": -1}, id="max-requests-negative"),
    ],
)
def test_policy_rejects_bad_values(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(fields))):
        ClosePolicy(**fields)


@pytest.mark.parametrize(
    ("policy", "opened_at", "draw", "expected"),
    [
        pytest.param(ClosePolicy(), 100.0, 0.5, math.inf, id="off"),
        pytest.param(ClosePolicy(max_age_jitter=30.0), 100.0, 0.5, math.inf, id="jitter-alone"),
        pytest.param(ClosePolicy(max_age=60.0), 100.0, 0.9, 160.0, id="no-jitter"),
        pytest.param(ClosePolicy(max_age=60.0, max_age_jitter=30.0), 100.0, 0.0, 160.0, id="min"),
        pytest.param(ClosePolicy(max_age=60.0, max_age_jitter=30.0), 100.0, 0.5, 175.0, id="mid"),
        pytest.param(ClosePolicy(max_age=60.0, max_age_jitter=32.0), 0.0, 0.75, 84.0, id="3q"),
    ],
)
def test_age_limit(policy: ClosePolicy, opened_at: float, draw: float, expected: float) -> None:
    assert age_limit(policy, opened_at, draw) == expected


@pytest.mark.parametrize("seed", [0, 7])
def test_age_limits_spread_over_the_jitter(seed: int) -> None:
    rng = random.Random(seed)
    policy = ClosePolicy(max_age=60.0, max_age_jitter=30.0)
    limits = [age_limit(policy, 1000.0, rng.random()) for _ in range(2000)]
    assert all(1060.0 <= limit < 1090.0 for limit in limits)
    # Spread over the whole interval, not bunched: every 3 s slice gets some.
    assert {int((limit - 1060.0) // 3) for limit in limits} == set(range(10))


def test_age_limit_with_jitter_drives_the_decision() -> None:
    policy = ClosePolicy(max_age=60.0, max_age_jitter=30.0)
    limit = age_limit(policy, 0.0, 0.5)  # 75
    assert decide(policy, now=74.9, age_limit=limit) == KEEP_OPEN
    assert decide(policy, now=75.0, age_limit=limit) == MAX_AGE


@pytest.mark.parametrize("seed", [0, 1])
def test_epoch_ratio_share_per_response(seed: int) -> None:
    # With epoch_ratio 0.5, half the responses on stale connections announce the close.
    rng = random.Random(seed)
    policy = ClosePolicy(epoch=5.0, epoch_ratio=0.5)
    closes = sum(decide(policy, rng.random, opened_at=0.0).close for _ in range(10_000))
    assert abs(closes / 10_000 - 0.5) <= 0.03
