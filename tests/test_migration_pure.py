# The change rule of automatic migration epochs (migproxy/migration.py), without I/O: answers
# reduced to samples, the share of this VIP, what counts as a move, and the baseline it is
# measured against. The noise cases draw from a seeded random source.
from __future__ import annotations

import ipaddress
import math
import random

import dns.exception
import dns.rdatatype
import dns.resolver
import pytest

from migproxy.migration import (
    BASELINE_SAMPLES,
    Baseline,
    IPAddress,
    Sample,
    observe,
    query_types,
    share_of,
    shift,
    tally,
    z_score,
)
from migproxy.upstream.resolver import Answer, LookupFailed

# dnspython's exceptions take untyped **kwargs
TIMEOUT = dns.exception.Timeout()  # type: ignore[no-untyped-call]
NXDOMAIN = dns.resolver.NXDOMAIN()  # type: ignore[no-untyped-call]


def vip(*addresses: str) -> frozenset[IPAddress]:
    return frozenset(ipaddress.ip_address(address) for address in addresses)


def one_address(hits: int, answers: int, ttl: float = 60.0) -> Sample:
    """A sample of `answers` one-address answers, `hits` of them this VIP's."""
    return Sample(answers, float(hits), float(hits), ttl)


def draw(rng: random.Random, share: float, answers: int) -> Sample:
    return one_address(sum(rng.random() < share for _ in range(answers)), answers)


# The share


@pytest.mark.parametrize(
    ("addresses", "expected"),
    [
        pytest.param(["10.0.0.1"], 1.0, id="this-vip"),
        pytest.param(["10.0.0.2"], 0.0, id="other-vip"),
        pytest.param(["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"], 0.25, id="one-of-four"),
        pytest.param(["FD00:0::1", "fd00::2"], 0.5, id="ipv6-any-spelling"),
    ],
)
def test_share_of_an_answer(addresses: list[str], expected: float) -> None:
    assert share_of(addresses, vip("10.0.0.1", "fd00::1")) == expected


def test_tally_makes_one_unit_per_answer_with_the_largest_ttl() -> None:
    results: list[Answer | BaseException] = [
        (("10.0.0.1",), 30.0),
        (("10.0.0.2",), 60.0),
        (("10.0.0.1", "10.0.0.2"), 10.0),
        ((), math.inf),  # NODATA: answered, no unit, its TTL unused
    ]
    sample = tally(results, vip("10.0.0.1"))
    assert sample == Sample(answers=3, share_sum=1.5, square_sum=1.25, ttl=60.0)
    assert sample.share == 0.5


def test_tally_keeps_a_sample_with_half_its_queries_answered() -> None:
    results: list[Answer | BaseException] = [
        (("10.0.0.1",), 30.0),
        TIMEOUT,
        (("10.0.0.2",), 30.0),
        TIMEOUT,
    ]
    assert tally(results, vip("10.0.0.1")) == one_address(1, 2, ttl=30.0)


@pytest.mark.parametrize(
    ("results", "reason"),
    [
        pytest.param(
            [TIMEOUT, TIMEOUT, (("10.0.0.1",), 30.0)],
            "timed out (2 of 3 queries failed)",
            id="timeouts",
        ),
        pytest.param(
            [NXDOMAIN],
            "no such name (NXDOMAIN) (1 of 1 queries failed)",
            id="nxdomain",
        ),
        pytest.param([((), math.inf), ((), math.inf)], "no A or AAAA records", id="nodata"),
    ],
)
def test_tally_fails_an_outage(results: list[Answer | BaseException], reason: str) -> None:
    with pytest.raises(LookupFailed) as failed:
        tally(results, vip("10.0.0.1"))
    assert str(failed.value) == reason


@pytest.mark.parametrize(
    ("addresses", "expected"),
    [
        pytest.param(["10.0.0.1"], (dns.rdatatype.A,), id="ipv4"),
        pytest.param(["fd00::1"], (dns.rdatatype.AAAA,), id="ipv6"),
        pytest.param(["fd00::1", "10.0.0.1"], (dns.rdatatype.A, dns.rdatatype.AAAA), id="dual"),
    ],
)
def test_query_types_follow_the_vip_families(
    addresses: list[str], expected: tuple[dns.rdatatype.RdataType, ...]
) -> None:
    assert query_types(addresses) == expected


# What counts as a move


def test_z_score_of_noiseless_answers() -> None:
    # A name answering the same set every time: any difference is real.
    half = Sample(20, 10.0, 5.0, 60.0)  # every answer 50% this VIP
    third = Sample(20, 20 / 3, 20 / 9, 60.0)  # every answer 1/3
    assert z_score(half, half) == 0.0
    # the spread is only the difference itself: z = sqrt(40) whatever the difference
    assert z_score(half, third) == pytest.approx(math.sqrt(40))
    assert z_score(one_address(20, 20), one_address(0, 20)) > 6


def test_shift_needs_share_change_and_more_than_noise() -> None:
    baseline = one_address(100, 200)  # 50% over 200 answers
    assert shift(baseline, one_address(0, 20), 0.05) == -1
    assert shift(baseline, one_address(20, 20), 0.05) == 1
    assert shift(baseline, one_address(14, 20), 0.05) == 0  # 70%: within noise of 20 answers
    assert shift(baseline, one_address(6, 20), 0.05) == 0
    # significant, but less than share_change
    assert shift(one_address(2000, 2000), one_address(1960, 2000), 0.05) == 0
    # exactly share_change (in floats, 0.95 - 1.0 is -0.05000000000000004 and 0.55 - 0.5
    # is 0.050000000000000044)
    assert shift(one_address(2000, 2000), one_address(1900, 2000), 0.05) == -1
    assert shift(one_address(1000, 2000), one_address(1100, 2000), 0.05) == 1


# The baseline and the epochs


def test_first_sample_only_sets_the_baseline() -> None:
    step = observe(None, one_address(20, 20), 0.05)
    assert step == observe(None, one_address(20, 20), 0.05)
    assert step.epoch is None
    assert step.baseline == Baseline(one_address(20, 20), 1)


def test_a_move_starts_an_epoch_when_the_next_sample_confirms_it() -> None:
    baseline = observe(None, one_address(20, 20), 0.05).baseline
    first = observe(baseline, one_address(0, 20, ttl=30.0), 0.05)
    assert first.epoch is None
    assert first.baseline.pending == one_address(0, 20, ttl=30.0)
    assert first.baseline.sample == baseline.sample  # a pending move is not pooled
    second = observe(first.baseline, one_address(1, 20, ttl=60.0), 0.05)
    assert second.epoch == one_address(1, 40, ttl=60.0)  # both, with the largest TTL
    assert second.baseline == Baseline(one_address(1, 40, ttl=60.0), 2)


def test_a_move_not_confirmed_is_forgotten() -> None:
    baseline = observe(None, one_address(10, 20), 0.05).baseline
    down = observe(baseline, one_address(0, 20), 0.05).baseline
    assert down.pending is not None and down.direction == -1
    # the next sample moved the other way: it waits in its place
    up = observe(down, one_address(20, 20), 0.05)
    assert up.epoch is None and up.baseline.direction == 1
    assert up.baseline.pending == one_address(20, 20)
    # a sample back at the baseline cancels it and is pooled
    back = observe(up.baseline, one_address(10, 20), 0.05)
    assert back.epoch is None
    assert back.baseline == Baseline(one_address(20, 40), 2)


def test_baseline_pools_the_first_samples_of_an_epoch_then_stays() -> None:
    baseline: Baseline | None = None
    for _ in range(BASELINE_SAMPLES + 5):
        step = observe(baseline, one_address(10, 20), 0.05)
        assert step.epoch is None
        baseline = step.baseline
    assert baseline == Baseline(one_address(10 * BASELINE_SAMPLES, 20 * BASELINE_SAMPLES), 10)


def test_noise_of_a_steady_split_starts_no_epoch() -> None:
    # What share_change alone would do to 20 one-address answers of a 50/50 split, and the
    # rule's answer: no epoch in thousands of samples.
    rng = random.Random(5)
    baseline: Baseline | None = None
    epochs = naive = 0
    for _ in range(5000):
        sample = draw(rng, 0.5, 20)
        if baseline is not None and abs(sample.share - baseline.sample.share) >= 0.05:
            naive += 1
        step = observe(baseline, sample, 0.05)
        baseline, epochs = step.baseline, epochs + (step.epoch is not None)
    assert epochs == 0
    assert naive > 2500


@pytest.mark.parametrize(
    ("before", "after"), [(1.0, 0.0), (0.5, 0.0), (0.0, 0.6)], ids=["100-0", "50-0", "0-60"]
)
def test_a_real_move_starts_one_epoch_then_none(before: float, after: float) -> None:
    rng = random.Random(6)
    baseline: Baseline | None = None
    for _ in range(BASELINE_SAMPLES):
        step = observe(baseline, draw(rng, before, 20), 0.05)
        assert step.epoch is None
        baseline = step.baseline
    epochs = []
    for index in range(200):
        step = observe(baseline, draw(rng, after, 20), 0.05)
        baseline = step.baseline
        if step.epoch is not None:
            epochs.append((index, step.epoch.share))
    assert len(epochs) == 1
    index, share = epochs[0]
    assert index < 5
    assert share == pytest.approx(after, abs=0.25)  # 3 standard errors of 40 answers
