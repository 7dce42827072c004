"""The alert thresholds the demo highlights, read from the Prometheus rule file (never copied).

The rule file is the one source of truth for what pages someone; the demo reads the numbers out
of the rules' PromQL so that a changed threshold changes the highlight too. A rule whose
expression no longer has the expected shape raises :class:`RuleShapeError` naming the rule, so
a unit test (and the demo's footer) notices instead of silently highlighting nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

RULE_FILE = (
    Path(__file__).resolve().parents[3] / "deploy" / "prometheus" / "rules" / "cx-alerts.yml"
)
"""In a source checkout; a wheel without ``deploy/`` gets no highlighting (said in the footer)."""

TTR_HIGH = "CXTicketResolutionTimeHigh"
TTR_SPIKE = "CXTicketResolutionTimeSpike"
DEAD_LETTERS = "CXPipelineDeadLetterRateHigh"
URGENT_AT_RISK = "CXUrgentTicketsAtRisk"

_NUMBER = r"([0-9]+(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?)"
_RANGE = r"[0-9]+[smhd]"
_PATTERNS: dict[str, dict[str, str]] = {
    TTR_HIGH: {
        "limit": rf"p90_{_RANGE}\s*>\s*{_NUMBER}",
        "min_resolutions": rf"increase{_RANGE}\s*>=\s*{_NUMBER}",
    },
    TTR_SPIKE: {
        "factor": rf"p90_{_RANGE}\s*>\s*{_NUMBER}\s*\*\s*cx:ttr_seconds_by_channel:p90_{_RANGE}",
        "min_resolutions": rf"increase{_RANGE}\s*>=\s*{_NUMBER}",
    },
    DEAD_LETTERS: {"limit": rf"ratio_rate10m\s*>\s*{_NUMBER}"},
    URGENT_AT_RISK: {"limit": rf"priority=\"urgent\"\}}\s*>=\s*{_NUMBER}"},
}


class RuleShapeError(ValueError):
    """The rule file lacks a rule the demo evaluates, or its expression changed shape."""


@dataclass(frozen=True)
class AlertThresholds:
    ttr_high_seconds: float
    ttr_high_min_resolutions: float
    ttr_spike_factor: float
    ttr_spike_min_resolutions: float
    dead_letter_ratio: float
    urgent_at_risk: float


def parse_thresholds(text: str) -> AlertThresholds:
    """The thresholds of the rules the demo evaluates, from the rule file's YAML text."""
    exprs = _exprs(yaml.safe_load(text))
    found: dict[str, dict[str, float]] = {}
    for alert, patterns in _PATTERNS.items():
        if alert not in exprs:
            raise RuleShapeError(f"alert rule {alert} is missing from the rule file")
        found[alert] = {}
        for key, pattern in patterns.items():
            match = re.search(pattern, exprs[alert])
            if match is None:
                raise RuleShapeError(f"alert rule {alert}: no {key} in {exprs[alert]!r}")
            found[alert][key] = float(match[1])
    return AlertThresholds(
        ttr_high_seconds=found[TTR_HIGH]["limit"],
        ttr_high_min_resolutions=found[TTR_HIGH]["min_resolutions"],
        ttr_spike_factor=found[TTR_SPIKE]["factor"],
        ttr_spike_min_resolutions=found[TTR_SPIKE]["min_resolutions"],
        dead_letter_ratio=found[DEAD_LETTERS]["limit"],
        urgent_at_risk=found[URGENT_AT_RISK]["limit"],
    )


def load_thresholds(path: Path = RULE_FILE) -> AlertThresholds:
    """Read ``path``; raises ``OSError`` or :class:`RuleShapeError` with the reason."""
    return parse_thresholds(path.read_text())


def _exprs(document: Any) -> dict[str, str]:
    groups = document.get("groups", []) if isinstance(document, dict) else []
    return {
        str(rule["alert"]): str(rule.get("expr", ""))
        for group in groups
        for rule in group.get("rules", [])
        if isinstance(rule, dict) and "alert" in rule
    }
