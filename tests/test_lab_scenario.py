# Lab scenarios: the shipped files are valid, and every mistake is reported as
# `FILE: key: reason`, including [close] keys, which migproxy's own config parser checks.
from __future__ import annotations

from pathlib import Path

import pytest

from migproxy.config import ConfigError
from migproxy.lab.fleet import build_fleet, classes, source_address, split
from migproxy.lab.scenario import CacheShare, load_scenario, parse_scenario
from tests.lab.fakes import scenario

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["quick.toml", "full.toml"])
def test_shipped_scenarios_are_valid(name: str) -> None:
    loaded = load_scenario(ROOT / "config" / "lab" / name)
    assert loaded.weights[0].at == 0
    assert len(loaded.policies) >= 4  # none, ratio, epoch + budget, epoch + back-off
    assert not loaded.policies[0].injects
    assert all(policy.injects for policy in loaded.policies[1:])


def test_quick_scenario_has_the_four_policies_of_issue_6() -> None:
    quick = load_scenario(ROOT / "config" / "lab" / "quick.toml")
    ratio, epoch, backoff = quick.policies[1:4]
    assert ratio.ratio > 0 and not ratio.epoch
    assert epoch.epoch and float(str(epoch.close["max_closes_per_second"])) > 0
    assert backoff.epoch and float(str(backoff.close["returning_window"])) > 0


def test_defaults() -> None:
    s = scenario()
    assert (s.ttl, s.seed, s.concurrent, s.epsilon, s.window, s.hold) == (5, 1, True, 0.01, 5, 5)
    assert s.dns_cache == (CacheShare(0.0, 1.0),)
    assert [step.old_share for step in s.steps] == [0.0]
    assert s.policies[1].start == "step" and s.policies[1].ratio == 0.5


BAD = [
    pytest.param({"colour": 1}, "test.toml: colour: unknown key", id="unknown-top-key"),
    pytest.param({"duration": 2}, "test.toml: duration: must be an integer between 5", id="short"),
    pytest.param(
        {"weights": [[1, 100, 0]]}, "weights: the first entry must be at 0 s", id="first-not-0"
    ),
    pytest.param(
        {"weights": [[0, 1, 0], [5, 0, 1], [5, 1, 1]]}, "entry 2: times must increase", id="order"
    ),
    pytest.param(
        {"weights": [[0, 1, 0], [2.5, 0, 1]]}, "entry 1: times must be whole", id="fraction"
    ),
    pytest.param({"weights": [[0, 0, 0]]}, "weights must be >= 0, not both 0", id="zero"),
    pytest.param({"weights": [[0, 1, 0], [20, 0, 1]]}, "before the end (20 s)", id="too-late"),
    pytest.param({"weights": [[0, 1]]}, "entry 0: must be [seconds, old", id="pair"),
    pytest.param({"clients": {"rates": [1]}}, "clients.count: required", id="no-count"),
    pytest.param(
        {"clients": {"count": 2, "rates": [0]}}, "clients.rates: each rate", id="zero-rate"
    ),
    pytest.param(
        {"clients": {"count": 2, "rates": [1], "dns_cache": [[0, 0.5], [60, 0.4]]}},
        "clients.dns_cache: must be an array of",
        id="shares",
    ),
    pytest.param(
        {"clients": {"count": 2, "rates": [1], "dns_cache": [["forever", 1.0]]}},
        "clients.dns_cache: must be a number",
        id="cache-word",
    ),
    pytest.param({"policy": []}, "test.toml: policy: at least one", id="no-policy"),
    pytest.param(
        {"policy": [{"name": "a"}, {"name": "a"}]}, "policy[1].name: 'a' is the name", id="dup"
    ),
    pytest.param(
        {"policy": [{"name": "a", "close": {"ratio": 2}}]},
        "test.toml: policy[0].close.ratio: must be a number between 0.0 and 1.0, got 2",
        id="close-range",
    ),
    pytest.param(
        {"policy": [{"name": "a", "close": {"rato": 0.1}}]},
        "test.toml: policy[0].close.rato: unknown key",
        id="close-typo",
    ),
    pytest.param(
        {"policy": [{"name": "a", "close": {"seed": 3}}]},
        "policy[0].close.seed: set by the lab itself",
        id="close-seed",
    ),
    pytest.param(
        {"policy": [{"name": "a", "start": "later"}]}, 'policy[0].start: must be "step"', id="start"
    ),
    pytest.param(
        {"policy": [{"name": "a", "epoch": "yes"}]},
        "policy[0].epoch: must be true or false",
        id="ep",
    ),
    pytest.param({"convergence": {"window": 0}}, "convergence.window: must be an integer", id="w"),
]


@pytest.mark.parametrize(("change", "message"), BAD)
def test_errors_name_file_key_and_reason(change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        scenario(**change)
    assert message in str(caught.value)
    assert str(caught.value).startswith("test.toml: ")


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope.toml: -: cannot read file"):
        load_scenario(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("duration = \n")
    with pytest.raises(ConfigError, match=r"broken.toml: -: invalid TOML"):
        load_scenario(broken)


def test_ttl_cache_is_none() -> None:
    s = parse_scenario(
        {
            "duration": 10,
            "weights": [[0, 1, 0]],
            "clients": {"count": 4, "rates": [1], "dns_cache": [["ttl", 0.5], [10, 0.5]]},
            "policy": [{"name": "n"}],
        },
        "t.toml",
    )
    assert s.dns_cache == (CacheShare(None, 0.5), CacheShare(10.0, 0.5))


def test_split_by_largest_remainder() -> None:
    assert split(10, [0.5, 0.25, 0.25]) == [5, 3, 2] or split(10, [0.5, 0.25, 0.25]) == [5, 2, 3]
    assert sum(split(7, [1 / 3, 1 / 3, 1 / 3])) == 7
    assert split(0, [0.5, 0.5]) == [0, 0]


def test_fleet_spreads_rates_and_caches_evenly() -> None:
    s = scenario(
        clients={"count": 12, "rates": [1, 5, 20], "dns_cache": [[0, 0.5], [10, 0.25], [60, 0.25]]}
    )
    fleet = build_fleet(s)
    assert [spec.rate for spec in fleet[:4]] == [1, 5, 20, 1]
    for rate in (1, 5, 20):
        caches = sorted(spec.cache or 0 for spec in fleet if spec.rate == rate)
        assert caches == [0, 0, 10, 60]
    assert classes(fleet)[0] == (1, 0.0)
    assert len({spec.source for spec in fleet}) == 12  # every client its own address
    assert all(0 <= spec.phase <= 1 for spec in fleet)
    assert build_fleet(s) == fleet  # deterministic: every policy drives the same fleet


def test_source_addresses() -> None:
    assert source_address(0) == "127.1.0.1"
    assert source_address(249) == "127.1.0.250"
    assert source_address(250) == "127.1.1.1"
