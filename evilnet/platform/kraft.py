"""KRaft (the kafka role's ``kafka_metadata_mode: kraft``): the cluster's id.

Every node of a KRaft cluster formats its storage with the same cluster id, once.
The id is generated once per inventory on the controller (Ansible's), in a file
beside the inventory's CA, and kept: a node added later is formatted with it, and a
second run formats nothing. Its form is Kafka's (``kafka-storage random-uuid``):
16 random bytes, URL-safe base64 without padding, 22 characters.
"""

from __future__ import annotations

import base64
import re
import uuid
from pathlib import Path

from evilnet.platform.secrets import write_private

_CLUSTER_ID = re.compile(r"^[A-Za-z0-9_-]{21}[AQgw]$")  # 16 bytes: the last 4 bits zero


class ClusterIdError(ValueError):
    """The file holds something that is not a cluster id."""


def new_cluster_id() -> str:
    """A random id in Kafka's form; never the all-zero or the reserved metadata id."""
    while True:
        raw = uuid.uuid4().bytes
        value = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        if raw != bytes(16) and raw != bytes(15) + b"\x01" and not value.startswith("-"):
            return value


def cluster_id(path: Path) -> str:
    """The id kept in ``path``, generated there the first time (two concurrent first
    runs agree on one value: the file is linked into place, never overwritten)."""
    if not path.exists():
        write_private(path, (new_cluster_id() + "\n").encode(), replace=False)
    value = path.read_text().strip()
    if not _CLUSTER_ID.match(value):
        raise ClusterIdError(f"{path} does not hold a Kafka cluster id (22 characters of "
                             "URL-safe base64): restore it from the backup of the CA directory")
    return value
