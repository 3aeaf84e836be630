"""`evilnet check` on the stack `make up` leaves: the production job, producers writing
posts for the same cities, and no address flags (the inventory only: the README's
commands run with none at all). The same file passes twice in a row; in both Kafka
metadata modes (the KRaft tier)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from analytics_helpers import BIN, REPO_ROOT
from stack_clients import evilnet_command

from evilnet.spark import reference

pytestmark = pytest.mark.stack

SAMPLE = REPO_ROOT / "evilnet" / "data" / "sample-posts.jsonl"


def _evilnet(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*evilnet_command(BIN / "evilnet"), *args], capture_output=True,
                          text=True, cwd=REPO_ROOT, timeout=900, check=False)


@pytest.mark.kraft
def test_check_of_the_shipped_sample_passes_twice_in_a_row(stack) -> None:
    posts = reference.read_posts(SAMPLE.read_bytes().splitlines())
    # The cities the default plan's producers keep writing to are in the sample.
    assert {"Toronto", "Montréal", "Vancouver", "St. John's"} <= {p.city for p in posts}

    for run in (1, 2):
        result = _evilnet("check", str(SAMPLE), "--timeout", "400")
        assert result.returncode == 0, f"run {run}: {result.stdout}{result.stderr}"
        summary = json.loads(result.stdout.splitlines()[-1])
        assert summary["equal"] and summary["posts"] == len(posts), summary
        # Compared, not all skipped: the 5-minute windows stay clear of the live posts.
        assert summary["skipped"]["city"] == summary["skipped"]["city,topic"] == 0, summary
        assert summary["rows"]["city,topic"] > summary["rows"]["city"] > 0, summary
        assert summary["rows"]["city, hour"] > 0, summary


def test_check_of_a_file_without_a_post_is_an_error(stack, tmp_path: Path) -> None:
    nothing = tmp_path / "nothing.jsonl"
    nothing.write_text('{"errors": [{"title": "operational-disconnect"}]}\nnot json\n',
                       encoding="utf-8")

    result = _evilnet("check", str(nothing))

    assert result.returncode == 2, result.stdout + result.stderr
    assert "holds no valid post" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
