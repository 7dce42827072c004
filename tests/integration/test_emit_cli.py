"""``cxpipe emit``: validates a JSONL file, reports bad lines by number, produces with the right key."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import orjson
import pytest

from tests.integration.harness import consume_all
from tests.integration.stories import envelope, item, survey

pytestmark = pytest.mark.integration


def emit(bootstrap: str, prefix: str, path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.tools.cli",
            "emit",
            str(path),
            "--bootstrap",
            bootstrap,
            *extra,
        ],
        env={"CX_TOPIC_PREFIX": prefix, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_emit_reports_bad_lines_and_produces_good_ones_with_contract_keys(broker, tmp_path):
    prefix = f"e{uuid.uuid4().hex[:8]}."
    now = time.time()
    good = [
        survey(now - 5, 9),
        item("cart-1", now - 5),
        envelope("ticket.opened", now, ticket_id="T-9", priority="low"),
    ]
    lines = [
        orjson.dumps(good[0]).decode(),
        "{broken",
        orjson.dumps(good[1]).decode(),
        "",
        orjson.dumps({**good[2], "event_id": uuid.uuid4().hex, "priority": "asap"}).decode(),
        orjson.dumps(good[2]).decode(),
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")

    refused = emit(broker.bootstrap, prefix, path)
    assert refused.returncode == 1
    assert f"{path}:2: invalid_json" in refused.stderr
    assert f"{path}:5: invalid_field" in refused.stderr
    assert "nothing produced" in refused.stderr

    produced = emit(broker.bootstrap, prefix, path, "--skip-invalid")
    assert produced.returncode == 1  # still non-zero: some lines were invalid
    assert "produced 3, invalid 2" in produced.stderr
    for topic, key, event in (
        ("surveys", good[0]["response_id"], good[0]),
        ("carts", "cart-1", good[1]),
        ("tickets", "T-9", good[2]),
    ):
        [record] = consume_all(broker.bootstrap, prefix + topic, 1)
        assert record.key == key.encode()
        assert orjson.loads(record.value) == event
