"""The stream job's alerts, as the prometheus role rendered them, on hand-made series
(`promtool test rules`): a driver that never got going is told from one that stopped."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from monitoring_helpers import MONITOR_ROOT

from evilnet.spark.metrics import LAST_PROGRESS, STARTED, TRIGGER

pytestmark = pytest.mark.stack  # the rules file is the one `make up` rendered

RULES = MONITOR_ROOT / "etc" / "prometheus" / "evilnet.rules.yml"
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
    tests = {"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": series,
        "alert_rule_test": [{"eval_time": at, "alertname": name, "exp_alerts": alerts}
                            for at, name, alerts in cases]}]}
    path = tmp_path / "stream-job-alerts.test.yml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False), encoding="utf-8")
    result = subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
