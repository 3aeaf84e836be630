"""The stream job's alerts, as the prometheus role renders them, on hand-made series
(`promtool test rules`): a driver that never got going is told from one that stopped."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from monitoring_helpers import promtool_test_rules

from evilnet.spark.metrics import LAST_PROGRESS, STARTED, TRIGGER

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None,
                                reason="promtool (Debian's prometheus package) is not installed")

TRIGGERS = 5  # prometheus_alert_job_stalled_triggers, the role's default


def _series(metric: str, query: str, values: str) -> dict:
    return {"series": f'{metric}{{job="stream_job",query="{query}"}}', "values": values}


def _alert(name: str, query: str, summary: str) -> dict:
    return {"exp_labels": {"severity": "critical", "job": "stream_job", "query": query},
            "exp_annotations": {"summary": summary}}


def test_no_progress_since_start_and_stalled_are_told_apart(tmp_path: Path) -> None:
    # Time starts at 0 s, one sample a minute. "windows": a driver started at 10 min whose
    # last progress is still the previous driver's (500 s). "hours": a driver started at
    # 0 that made progress every minute until 10 min (600 s), then none.
    series = [
        _series(TRIGGER, "windows", "_x9 60x20"),
        _series(STARTED, "windows", "_x9 600x20"),
        _series(LAST_PROGRESS, "windows", "_x9 500x20"),
        _series(TRIGGER, "hours", "60x30"),
        _series(STARTED, "hours", "0x30"),
        _series(LAST_PROGRESS, "hours", "0+60x10 600x20"),
    ]
    never = "the stream job's windows query has made no progress since its driver started " \
            f"{TRIGGERS} triggers ago"
    stopped = f"the stream job's hours query made progress, then none for {TRIGGERS} triggers"
    cases = [
        # 3 min after the restart, 4 after the last progress: too early for either.
        ("13m", "StreamJobNoProgressSinceStart", []),
        ("14m", "StreamJobStalled", []),
        # 10 triggers after the restart, none since: only the first alert, for windows.
        ("20m", "StreamJobNoProgressSinceStart",
         [_alert("StreamJobNoProgressSinceStart", "windows", never)]),
        ("20m", "StreamJobStalled", [_alert("StreamJobStalled", "hours", stopped)]),
    ]
    promtool_test_rules(tmp_path, series, cases)
