"""End to end on the local inventory: the Jenkinsfile's steps, from a shell, against
the X API simulator, the real Kafka and the stream job writing to the real Cassandra;
then one more city restarts only its shard."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from jenkins_steps import run_jenkins_steps
from kafka import TopicPartition
from stack_clients import evilnet_command, kafka_consumer
from supervised import service_pid

from evilnet.contracts import TWEETS_TOPIC
from evilnet.platform.inventory import Inventory
from evilnet.platform.playbook import run_playbook
from evilnet.waiting import poll_until

REPO_ROOT = Path(__file__).resolve().parents[2]
PRODUCER_HOST_ROOT = REPO_ROOT / ".run" / "hosts" / "producer1"
BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.stack, pytest.mark.disruptive]


def _end_offsets(bootstrap: str) -> dict[TopicPartition, int]:
    consumer = kafka_consumer(bootstrap=bootstrap)
    try:
        partitions = [TopicPartition(TWEETS_TOPIC, p)
                      for p in consumer.partitions_for_topic(TWEETS_TOPIC)]
        return consumer.end_offsets(partitions)
    finally:
        consumer.close()


def _cities_since(bootstrap: str, offsets: dict[TopicPartition, int], want: set[str],
                  timeout: float = 60) -> set[str]:
    """City keys of the records written after ``offsets``, until ``want`` are all seen."""
    consumer = kafka_consumer(bootstrap=bootstrap, enable_auto_commit=False)
    consumer.assign(list(offsets))
    for partition, offset in offsets.items():
        consumer.seek(partition, offset)
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not want <= seen:
            for records in consumer.poll(timeout_ms=1000).values():
                seen.update(record.key.decode() for record in records)
        # A few more seconds: a city that should not be there would show up too.
        end = time.monotonic() + 5
        while time.monotonic() < end:
            for records in consumer.poll(timeout_ms=500).values():
                seen.update(record.key.decode() for record in records)
    finally:
        consumer.close()
    return seen


def _cities_in_cassandra(stack: Inventory, since: datetime, want: set[str],
                         timeout: float = 300) -> set[str]:
    """Cities of the 5-minute windows that start at or after ``since`` (the stream job
    `make up` runs writes them to the inventory's Cassandra, which `evilnet query` reads
    with the inventory's login), once ``want`` are all there or the timeout passed.

    Such a window holds only posts created after ``since``: the simulator stamps posts
    with the time it sends them.
    """
    def cities() -> set[str]:
        result = subprocess.run(
            [*evilnet_command(BIN / "evilnet", stack), "query", "windows",
             "--from", since.isoformat(), "--to", (since + timedelta(hours=1)).isoformat(),
             "--format", "json"], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
        return {row["city"] for row in json.loads(result.stdout)}

    return poll_until(cities, lambda seen: want <= seen, timeout, interval=10)[1]


def _next_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0) + timedelta(minutes=1)


def test_jenkins_steps_roll_out_producers_and_one_more_city_restarts_one_shard(
        stack: Inventory, kafka_bootstrap: str, tmp_path: Path) -> None:
    # (The stack fixture checked the simulator `make up` runs: the producers' source.)
    plan_dir = tmp_path / "plan"
    try:
        outputs = run_jenkins_steps("local", "Toronto\nMontréal,Vancouver", "hockey,transit",
                                    plan_dir)
        rolled_out_at = datetime.now(UTC)
        after_rollout = _end_offsets(kafka_bootstrap)
        plan = json.loads((plan_dir / "plan.json").read_text())
        assert [c["name"] for c in plan["cities"]] == ["Toronto", "Montréal", "Vancouver"]
        assert (plan_dir / "diff.json").exists() and "shard" in outputs["diff"]
        assert "stream connected" in outputs["verify"]
        wanted = {"Toronto", "Montréal", "Vancouver"}
        assert _cities_since(kafka_bootstrap, after_rollout, wanted) == wanted

        # Every shard is its own supervised process with its 0600 token, nothing else runs.
        services = {shard["service"] for shard in plan["shards"]}
        pids = {service: service_pid("producer1", service) for service in services}
        assert all(pids.values()), pids
        conf_d = PRODUCER_HOST_ROOT / "supervisor" / "conf.d"
        assert {p.stem for p in conf_d.glob("producer-*.conf")} == services
        for shard in plan["shards"]:
            token = PRODUCER_HOST_ROOT / "producers" / shard["name"] / "bearer-token"
            assert token.stat().st_mode & 0o777 == 0o600
            secret = token.read_text().strip()
            for rendered in plan_dir.rglob("*"):
                assert not rendered.is_file() or secret not in rendered.read_text()

        # One more city: only the shard that receives it changes.
        outputs = run_jenkins_steps("local", "Toronto\nMontréal,Vancouver\nHalifax",
                                    "hockey,transit", plan_dir)
        after_second = _end_offsets(kafka_bootstrap)
        plan2 = json.loads((plan_dir / "plan.json").read_text())
        halifax_shard = next(s for s in plan2["shards"] if "Halifax" in s["cities"])
        unchanged = {s["service"] for s in plan["shards"]} - {halifax_shard["service"]}
        assert unchanged, "the new city should not take an existing shard of this plan"
        assert {service: service_pid("producer1", service) for service in unchanged} == {
            service: pids[service] for service in unchanged}
        assert service_pid("producer1", halifax_shard["service"]) is not None
        assert re.search(r"^[+~] shard " + halifax_shard["name"], outputs["diff"], re.M)
        seen = _cities_since(kafka_bootstrap, after_second, wanted | {"Halifax"})
        assert seen == wanted | {"Halifax"}
        # ...and the stream job fills Cassandra with windows of exactly the cities rolled
        # out: the default plan's St. John's stopped with the first rollout, Halifax came
        # with the second. (Checked last: the job's next 1-minute trigger overlaps the
        # second rollout instead of being waited for alone.)
        assert _cities_in_cassandra(stack, _next_minute(rolled_out_at),
                                    wanted | {"Halifax"}) == wanted | {"Halifax"}
    finally:
        # Back to the default plan `make up` deploys.
        restored = run_playbook("ansible/playbooks/producers.yml",
                                REPO_ROOT / "inventories" / "local", project_dir=REPO_ROOT,
                                timeout=900)
        assert restored.returncode == 0, restored.output[-6000:]
