"""Each package's public surface is its ``__all__``, and nothing else leaks (httpx's rule)."""

from __future__ import annotations

import importlib
import types

import pytest

PACKAGES = [
    "pipeline.act",
    "pipeline.collector",
    "pipeline.aggregates",
    "pipeline.domain",
    "pipeline.engine",
    "pipeline.kafka",
    "pipeline.http",
    "pipeline.worker",
    "pipeline.tools",
    "schemas",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_exactly_the_public_names(name: str) -> None:
    package = importlib.import_module(name)
    public = {
        member
        for member in dir(package)
        if not member.startswith("_") and not isinstance(getattr(package, member), types.ModuleType)
    }
    assert sorted(package.__all__) == sorted(public)
    assert len(set(package.__all__)) == len(package.__all__)
