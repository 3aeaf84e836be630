"""The producers' X API alerts, as the prometheus role renders them, on hand-made series
(`promtool test rules`): a usage cap is told at once, the monthly cap at 80 %."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from monitoring_helpers import promtool_test_rules

from evilnet.producer.metrics import MONTHLY_POST_CAP, POSTS_RECEIVED, USAGE_CAPPED

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None,
                                reason="promtool (Debian's prometheus package) is not installed")


def test_a_usage_capped_shard_alerts_at_once_and_stops_when_it_streams_again(
        tmp_path: Path) -> None:
    labels = 'job="producers",host="producer1",shard="app-1"'
    series = [{"series": f"{USAGE_CAPPED}{{{labels}}}", "values": "0 0 1 1 1 0 0"}]
    capped = {"exp_labels": {"severity": "critical", "host": "producer1", "shard": "app-1"},
              "exp_annotations": {"summary": "app-1: the X API refuses the stream for its usage "
                                             "cap; no posts until the period resets"}}
    promtool_test_rules(tmp_path, series, [("1m", "ProducerUsageCapped", []),
                                      ("2m", "ProducerUsageCapped", [capped]),
                                      ("6m", "ProducerUsageCapped", [])])


def test_the_monthly_post_cap_alerts_at_80_percent_only_where_a_cap_is_set(
        tmp_path: Path) -> None:
    # 10 posts a minute on both shards; app-1 has a cap of 1,000 a month, app-2 none (0).
    series = []
    for shard, cap in (("app-1", 1000), ("app-2", 0)):
        labels = f'job="producers",host="producer1",shard="{shard}"'
        series += [
            {"series": f'{POSTS_RECEIVED}_total{{{labels},source="x-stream"}}',
             "values": "0+10x120"},
            {"series": f"{MONTHLY_POST_CAP}{{{labels}}}", "values": f"{cap}x120"},
        ]
    # The role's default window: 7 days, scaled to 30. The pace reaches 80 % of the cap
    # (800 a month) at 800 * 7 / 30 = 186.7 posts: not at 180 (18 min), at 210 (21 min),
    # on pace for 210 * 30 / 7 = 900 posts.
    near = {"exp_labels": {"severity": "warning", "shard": "app-1"},
            "exp_annotations": {"summary": "app-1 is on pace for 900 posts in 30 days: 80 % "
                                           "of the monthly post cap or more"}}
    promtool_test_rules(tmp_path, series, [("18m", "ProducerMonthlyPostCapNear", []),
                                      ("21m", "ProducerMonthlyPostCapNear", [near])])
