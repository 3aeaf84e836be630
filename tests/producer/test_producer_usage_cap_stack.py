"""`evilnet produce` meets a usage cap (HTTP 429 UsageCapExceeded): it stops trying,
says so in its log and metrics, and an operator's SIGHUP brings it back."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import requests
from producer_helpers import Simulator, free_port, wait_until, write_config
from test_producer_stack import start, stop, topics  # noqa: F401 (a fixture)

from evilnet.producer.metrics import USAGE_CAPPED

pytestmark = pytest.mark.stack


def test_a_usage_cap_stops_the_retries_until_sighup(
        tmp_path: Path, simulator: Simulator, producer_config: dict, producer_kafka: dict,
        topics: tuple[str, str]) -> None:  # noqa: F811
    metrics_port = free_port()
    config = write_config(tmp_path / "producer.yaml", **{
        **producer_config, **producer_kafka,
        "tweets_topic": topics[0], "dead_letter_topic": topics[1],
        "metrics_host": "127.0.0.1", "metrics_port": metrics_port})

    def capped() -> float | None:
        text = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        line = next((line for line in text.splitlines()
                     if line.startswith(USAGE_CAPPED + " ")), None)
        return float(line.split()[1]) if line else None

    producer = start("produce", "--config", str(config))
    try:
        wait_until(lambda: simulator.state()["posts_sent"] >= 20, what="the stream")
        simulator.fault(kind="refuse", error="usage-cap-exceeded", count=1)
        simulator.fault(kind="drop")
        wait_until(lambda: capped() == 1, what="the usage cap in the metrics")
        # 2 s at the time scale of 0.05 are 40 nominal seconds: any other backoff would
        # have retried (and, the refusal spent, connected) by now.
        time.sleep(2)
        connections_while_capped = simulator.state()["connections_opened"]
        producer.send_signal(signal.SIGHUP)
        wait_until(lambda: simulator.state()["connections_opened"] == 2,
                   what="the stream to resume after SIGHUP")
        wait_until(lambda: capped() == 0, what="the gauge to clear")
    finally:
        code, _, logs = stop(producer)

    assert connections_while_capped == 1
    assert code == 0, logs[-2000:]
    assert "stream stopped: usage cap" in logs and "stream resumed by the operator" in logs
