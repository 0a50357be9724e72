# Pure tests of migproxy.policy.close: the close decision as a table of facts -> decision,
# first match wins (drain > client > required > ratio), and the injected share measured over
# a seeded Random so that the result is deterministic.
from __future__ import annotations

import dataclasses
import random

import pytest

from migproxy.http1.events import BodyKind
from migproxy.policy.close import (
    KEEP_OPEN,
    CloseDecision,
    ClosePolicy,
    CloseReason,
    decide_close,
    required_close,
)

DRAIN = CloseDecision(True, CloseReason.DRAIN)
CLIENT = CloseDecision(True, CloseReason.CLIENT)
UPSTREAM = CloseDecision(True, CloseReason.UPSTREAM)
ERROR = CloseDecision(True, CloseReason.ERROR)
RATIO = CloseDecision(True, CloseReason.RATIO, injected=True)

LAST_DRAW = 0.999  # close to the largest value random.random() returns


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
    decision = decide_close(
        client_keep_alive=client_keep_alive,
        required=required,
        draining=draining,
        policy=ClosePolicy(ratio=ratio),
        draw=draw,
    )
    assert decision == expected


@pytest.mark.parametrize("reason", list(CloseReason))
def test_required_reason_is_passed_through_not_injected(reason: CloseReason) -> None:
    decision = decide_close(
        client_keep_alive=True,
        required=reason,
        draining=False,
        policy=ClosePolicy(),
        draw=0.5,
    )
    assert decision == CloseDecision(True, reason, injected=False)


def test_only_the_ratio_is_injected() -> None:
    assert RATIO.injected
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
        decision = decide_close(
            client_keep_alive=True,
            required=None,
            draining=False,
            policy=policy,
            draw=rng.random(),
        )
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
