"""``cxpipe sla check`` and the worker's start-up check of ``CX_SLA_POLICY``, via the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

GOOD = """\
timezone: Europe/Berlin
business_hours:
  mon: ["09:00-12:00", "13:00-17:00"]
targets:
  first_response: {urgent: 900, high: 3600, normal: 14400, low: 28800}
  resolution: {urgent: 14400, high: 28800, normal: 86400, low: 259200}
"""
BAD = GOOD.replace('"13:00-17:00"', '"11:00-17:00"')  # overlaps 09:00-12:00, on line 3


def cxpipe(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.tools.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_sla_check_prints_the_summary(tmp_path: Path):
    policy = tmp_path / "policy.yml"
    policy.write_text(GOOD)
    result = cxpipe("sla", "check", str(policy))
    assert result.returncode == 0, result.stderr
    assert "business hours in Europe/Berlin, 7 h a week" in result.stdout
    assert "mon: 09:00-12:00, 13:00-17:00" in result.stdout


def test_sla_check_names_the_line_of_a_bad_policy(tmp_path: Path):
    policy = tmp_path / "policy.yml"
    policy.write_text(BAD)
    result = cxpipe("sla", "check", str(policy))
    assert result.returncode == 1
    assert f"{policy}:3: business_hours.mon: 11:00-17:00 overlaps 09:00-12:00" in result.stderr


def test_worker_refuses_to_start_with_a_bad_policy(tmp_path: Path):
    """Refused before it connects: the bootstrap address is never even tried."""
    policy = tmp_path / "policy.yml"
    policy.write_text(BAD)
    result = cxpipe("worker", "--bootstrap", "127.0.0.1:1", env={"CX_SLA_POLICY": str(policy)})
    assert result.returncode == 2
    assert f"{policy}:3:" in result.stderr and "overlaps" in result.stderr
    missing = cxpipe(
        "worker", "--bootstrap", "127.0.0.1:1", env={"CX_SLA_POLICY": str(tmp_path / "nope.yml")}
    )
    assert missing.returncode == 2 and "cannot read the SLA policy" in missing.stderr
