# The Prometheus rules shipped in config/prometheus: valid for promtool, unit-tested by their
# own promtool tests, named as the dashboard and the e2e tests expect, and built on metrics that
# migproxy really exports.
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from migproxy.metrics import build_metrics
from tests.conftest import require_tool
from tests.prometheus_names import ALERTS, RECORDING_RULES

ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = ROOT / "config" / "prometheus"
RULES = RULES_DIR / "rules.yml"
RULES_TEST = RULES_DIR / "rules_test.yml"
PROMTOOL_TIMEOUT = 60.0

GROUPS = ("migproxy.recording", "migproxy.alerts")
RULE_START = re.compile(r"^\s*- (record|alert): *(\S+) *$", re.MULTILINE)


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_tool("promtool")


def run(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT,
        cwd=ROOT,
        check=False,
    )


def rules_text() -> str:
    return RULES.read_text(encoding="utf-8")


def rule_blocks() -> dict[str, str]:
    """Each rule's text (from its `- record:`/`- alert:` line to the next), by name."""
    text = rules_text()
    starts = list(RULE_START.finditer(text))
    ends = [m.start() for m in starts[1:]] + [len(text)]
    return {m.group(2): text[m.start() : end] for m, end in zip(starts, ends, strict=True)}


def test_promtool_check_rules(promtool: str) -> None:
    result = run([promtool, "check", "rules", "--lint=all", "--lint-fatal", str(RULES)])
    assert result.returncode == 0, result.stdout + result.stderr
    # promtool saw every rule the file declares (none lost to a YAML indentation slip)
    found = re.search(r"SUCCESS: (\d+) rules found", result.stdout)
    assert found is not None, result.stdout
    assert int(found.group(1)) == len(rule_blocks())


def test_promtool_unit_tests(promtool: str) -> None:
    result = run([promtool, "test", "rules", str(RULES_TEST)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_groups_are_named() -> None:
    text = rules_text()
    for group in GROUPS:
        assert re.search(rf"^\s*- name: {re.escape(group)}\s*$", text, re.MULTILINE), group


@pytest.mark.parametrize("name", RECORDING_RULES)
def test_recording_rule_exists(name: str) -> None:
    blocks = rule_blocks()
    assert name in blocks, f"record: {name} missing from {RULES}"
    assert blocks[name].lstrip().startswith(f"- record: {name}")


def test_only_the_documented_recording_rules() -> None:
    recorded = {m.group(2) for m in RULE_START.finditer(rules_text()) if m.group(1) == "record"}
    assert recorded == set(RECORDING_RULES)


@pytest.mark.parametrize("name", ALERTS)
def test_alert_is_actionable(name: str) -> None:
    blocks = rule_blocks()
    assert name in blocks, f"alert: {name} missing from {RULES}"
    block = blocks[name]
    assert block.lstrip().startswith(f"- alert: {name}")
    assert re.search(r"^\s+for: \d+[smh]\s*$", block, re.MULTILINE), f"{name}: no for:"
    assert re.search(r"^\s+severity: (warning|critical)\s*$", block, re.MULTILINE), name
    assert re.search(r"^\s+summary: \S", block, re.MULTILINE), f"{name}: no summary"
    assert re.search(r"^\s+description: \S", block, re.MULTILINE), f"{name}: no description"


@pytest.mark.parametrize("name", RECORDING_RULES)
def test_recording_rule_is_unit_tested(name: str) -> None:
    tests = RULES_TEST.read_text(encoding="utf-8")
    assert re.search(rf"^\s+- expr: .*{re.escape(name)}", tests, re.MULTILINE), name


@pytest.mark.parametrize("name", ALERTS)
def test_alert_is_unit_tested_firing_and_quiet(name: str) -> None:
    tests = RULES_TEST.read_text(encoding="utf-8")
    quiet = rf"alertname: {name}\n\s+exp_alerts: \[\]"
    firing = rf"alertname: {name}\n\s+exp_alerts:\n\s+- exp_labels:"
    assert re.search(quiet, tests), f"{name}: no not-firing case"
    assert re.search(firing, tests), f"{name}: no firing case"


def exposition() -> str:
    registry = CollectorRegistry()
    build_metrics(registry, "old")
    return generate_latest(registry).decode()


def test_promtool_check_metrics(promtool: str) -> None:
    result = run([promtool, "check", "metrics"], stdin=exposition())
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == ""


def test_rules_use_exported_metrics() -> None:
    """Every migproxy_* name in the rules is a sample name migproxy exports, with `vip`."""
    exported: set[str] = set()
    for family in text_string_to_metric_families(exposition()):
        for sample in family.samples:
            assert sample.labels.get("vip") == "old", sample
            exported.add(sample.name)
    used = set(re.findall(r"\bmigproxy_[a-z0-9_]+", rules_text()))
    assert used, "no metric referenced"
    assert used <= exported, sorted(used - exported)
