"""Prometheus metric names of the resource footprint (`evilnet footprint --serve`).

The one home of these names: the exporter (evilnet/platform/footprint.py), the
alerting rules (through ansible/generate_contracts.py) and the Pipeline health
dashboard (grafana/generate.py) import them. Every upper-case string here is a
metric name.
"""

# The share of a limit that the report marks and Prometheus alerts at (the seed's
# section 6: "ideally the peak usage should be 80 % of the total resource limit").
ALERT_SHARE = 0.8

# Resident memory of a service's processes on a host {host, service}.
MEMORY_USED = "evilnet_footprint_memory_used_bytes"
# A service's memory limit {host, service, source}: source="memory.max" for an
# enforced cgroup limit (systemd MemoryMax), "heap" for a JVM's -Xmx (a reference:
# a JVM's resident memory exceeds its heap by design, so it is not alerted on).
MEMORY_LIMIT = "evilnet_footprint_memory_limit_bytes"
# Bytes on disk {host, service, part}: part "data" and "logs" are a service's
# directories under the host's root; "segments", "sstables" and "checkpoints" are
# the part of "data" that Kafka, Cassandra and the stream job keep there.
DISK_USED = "evilnet_footprint_disk_used_bytes"
# The disk a host's root may use {host} (runtime_disk_limit).
DISK_LIMIT = "evilnet_footprint_disk_limit_bytes"
