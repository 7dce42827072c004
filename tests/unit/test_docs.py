"""The README stays true to the code: configuration table and metric names."""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.settings import configuration_table

README = (Path(__file__).parents[2] / "README.md").read_text()


def test_configuration_table_matches_settings():
    block = re.search(
        r"<!-- configuration-table:start -->\n(.*?)\n<!-- configuration-table:end -->", README, re.S
    )
    assert block is not None, "README lost its configuration-table markers"
    assert block.group(1) == configuration_table(), (
        "README configuration table is stale: paste pipeline.settings.configuration_table()"
    )
