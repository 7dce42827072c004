"""Fixtures of the deployment tests; helpers live in deploy_support.py."""

from types import ModuleType

import pytest
from deploy_support import contract_path, load_dashboard_builder, parse_contract


@pytest.fixture(scope="session")
def contract_metrics() -> dict[str, str]:
    """``{name: type}`` of CONTRACT.md's metric table (the authoritative metric names)."""
    path = contract_path()
    if path is None:
        pytest.skip("CONTRACT.md not found (looked in the repo and in ../shared/)")
    metrics = parse_contract(path.read_text(encoding="utf-8"))
    assert metrics, f"no metric table found in {path}"
    return metrics


@pytest.fixture(scope="session")
def dashboard_builder() -> ModuleType:
    return load_dashboard_builder()
