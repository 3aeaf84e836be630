"""The pipeline's Kafka topics, created and kept to their settings idempotently.

Topic names come from :mod:`evilnet.contracts`; the Kafka role decides partitions,
replication and retention. Partitions are only ever added (Kafka cannot remove
them, and more partitions re-key a topic: the change is explicit and logged);
replication factor changes are refused (they need a reassignment plan).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from evilnet.contracts import DEAD_LETTER_TOPIC, TWEETS_TOPIC
from evilnet.kafka_clients import COMMAND_CLIENT

if TYPE_CHECKING:
    from kafka.admin import KafkaAdminClient
# kafka-python is imported where a client is opened: `evilnet` loads this module
# to list its commands, and the Kafka client takes a while to import.


class TopicError(RuntimeError):
    """A topic exists with settings this tool will not change on its own."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str] = field(default_factory=dict)


def pipeline_topics(replication_factor: int, min_insync_replicas: int,
                    tweets_partitions: int, tweets_retention_ms: int,
                    dead_letter_partitions: int, dead_letter_retention_ms: int) -> list[TopicSpec]:
    common = {"min.insync.replicas": str(min_insync_replicas),
              "unclean.leader.election.enable": "false"}
    return [
        TopicSpec(TWEETS_TOPIC, tweets_partitions, replication_factor,
                  {**common, "retention.ms": str(tweets_retention_ms)}),
        TopicSpec(DEAD_LETTER_TOPIC, dead_letter_partitions, replication_factor,
                  {**common, "retention.ms": str(dead_letter_retention_ms)}),
    ]


def ensure_topics(bootstrap: str, specs: list[TopicSpec],
                  security: Mapping[str, str] | None = None) -> list[str]:
    """Create missing topics and bring existing ones to ``specs``; return what changed.
    ``security``: kafka-python's settings for a secured cluster (the admin principal's,
    evilnet.kafka_clients.security_kwargs), as for every function here."""
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="evilnet-topics",
                             request_timeout_ms=30000, **COMMAND_CLIENT, **(security or {}))
    changes: list[str] = []
    try:
        existing = set(admin.list_topics())
        missing = [spec for spec in specs if spec.name not in existing]
        if missing:
            admin.create_topics([NewTopic(s.name, s.partitions, s.replication_factor,
                                          topic_configs=s.configs) for s in missing])
            changes += [f"created {s.name} ({s.partitions} partitions, "
                        f"replication {s.replication_factor})" for s in missing]
        present = [spec for spec in specs if spec.name in existing]
        if present:
            changes += _converge(admin, present)
    finally:
        admin.close()
    return changes


def _converge(admin: KafkaAdminClient, specs: list[TopicSpec]) -> list[str]:
    from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions

    changes = []
    described = {topic["name"]: topic for topic in admin.describe_topics([s.name for s in specs])}
    for spec in specs:
        partitions = described[spec.name]["partitions"]
        replication = len(partitions[0]["replica_nodes"])
        if replication != spec.replication_factor:
            raise TopicError(
                f"{spec.name} has replication factor {replication}, wanted "
                f"{spec.replication_factor}: reassign partitions with "
                f"kafka-reassign-partitions; this tool will not")
        if len(partitions) > spec.partitions:
            raise TopicError(f"{spec.name} has {len(partitions)} partitions, wanted "
                             f"{spec.partitions}: Kafka cannot remove partitions")
        if len(partitions) < spec.partitions:
            admin.create_partitions({spec.name: NewPartitions(spec.partitions)})
            changes.append(f"{spec.name}: partitions {len(partitions)} -> {spec.partitions}")

    resources = [ConfigResource(ConfigResourceType.TOPIC, s.name) for s in specs]
    described_configs = admin.describe_configs(resources).get("topic", {})
    current = {name: {key: entry["value"] for key, entry in configs.items()}
               for name, configs in described_configs.items()}
    for spec in specs:
        drift = {key: value for key, value in spec.configs.items()
                 if current.get(spec.name, {}).get(key) != value}
        if drift:
            # alter_configs replaces the topic's whole dynamic config: send all of it.
            admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, spec.name,
                                                configs=spec.configs)])
            changes += [f"{spec.name}: {key}={value}" for key, value in sorted(drift.items())]
    return changes


# --- read-only: `evilnet topics list|describe` ----------------------------------------

@dataclass(frozen=True)
class PartitionState:
    partition: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    log_end_offset: int
    # Records the stream job has not consumed yet: the log end offset minus the
    # slowest of the job's queries' end offsets (None: the job records nothing here).
    job_lag: int | None = None


@dataclass(frozen=True)
class TopicState:
    name: str
    retention_ms: str | None
    min_insync_replicas: str | None
    partitions: tuple[PartitionState, ...]

    @property
    def under_replicated(self) -> int:
        return sum(len(p.isr) < len(p.replicas) for p in self.partitions)

    def to_json(self) -> dict:
        return {"topic": self.name, "retention_ms": self.retention_ms,
                "min_insync_replicas": self.min_insync_replicas,
                "under_replicated": self.under_replicated,
                "partitions": [{"partition": p.partition, "leader": p.leader,
                                "replicas": list(p.replicas), "isr": list(p.isr),
                                "log_end_offset": p.log_end_offset, "job_lag": p.job_lag}
                               for p in self.partitions]}


def list_topics(bootstrap: list[str], security: Mapping[str, str] | None = None) -> list[str]:
    """The cluster's topics, internal ones (``__consumer_offsets``) left out."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="evilnet-topics",
                             **COMMAND_CLIENT, **(security or {}))
    try:
        return sorted(name for name in admin.list_topics() if not name.startswith("__"))
    finally:
        admin.close()


def describe_topics(bootstrap: list[str], names: list[str],
                    job_offsets: dict[str, dict[int, int]] | None = None,
                    security: Mapping[str, str] | None = None) -> list[TopicState]:
    """Partitions, replicas, ISR, retention and log end offsets; nothing is changed.

    ``job_offsets``: per topic, the stream job's consumed offset per partition
    (its ``job_progress`` rows); the lag of each partition is computed from it.
    """
    from kafka import KafkaConsumer, TopicPartition
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="evilnet-topics",
                             **COMMAND_CLIENT, **(security or {}))
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="evilnet-topics",
                             **COMMAND_CLIENT, **(security or {}))
    try:
        existing = set(admin.list_topics())
        unknown = [name for name in names if name not in existing]
        if unknown:
            raise TopicError(f"no topic {', '.join(map(repr, unknown))}; the cluster has "
                             f"{', '.join(sorted(n for n in existing if not n.startswith('__')))}")
        described = {t["name"]: t for t in admin.describe_topics(names)}
        configs = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]).get("topic", {})
        states = []
        for name in names:
            partitions = sorted(described[name]["partitions"], key=lambda p: p["partition_index"])
            ends = consumer.end_offsets([TopicPartition(name, p["partition_index"])
                                         for p in partitions])
            consumed = (job_offsets or {}).get(name)
            rows = []
            for p in partitions:
                index = p["partition_index"]
                end = ends[TopicPartition(name, index)]
                lag = None if consumed is None else max(0, end - consumed.get(index, 0))
                rows.append(PartitionState(index, p["leader_id"], tuple(p["replica_nodes"]),
                                           tuple(sorted(p["isr_nodes"])), end, lag))
            settings = {key: entry["value"] for key, entry in configs.get(name, {}).items()}
            states.append(TopicState(name, settings.get("retention.ms"),
                                     settings.get("min.insync.replicas"), tuple(rows)))
        return states
    finally:
        consumer.close()
        admin.close()
