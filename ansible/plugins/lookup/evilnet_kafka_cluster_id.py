"""lookup('evilnet_kafka_cluster_id', PATH): the inventory's KRaft cluster id, kept in PATH.

A thin adapter of evilnet/platform/kraft.py (the one home of the id's form), run on
the controller: generated the first time, read from then on.
"""

from __future__ import annotations

from pathlib import Path

from ansible.errors import AnsibleError

from ansible.plugins.lookup import LookupBase

DOCUMENTATION = r"""
name: evilnet_kafka_cluster_id
author: EvilNet
short_description: The KRaft cluster id of the inventory, generated once into a file
description:
  - Reads the cluster id from the file on the controller; generates it there (0600, in
    Kafka's form) the first time. The kafka role formats every node's storage with it.
options:
  _terms:
    description: The file (absolute, or relative to the inventory directory).
    required: true
"""

RETURN = r"""
_raw:
  description: The cluster id, one per file asked.
  type: list
  elements: str
"""


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        from evilnet.platform import kraft

        values = []
        for term in terms:
            path = Path(str(term))
            if not path.is_absolute():
                path = Path(str((variables or {}).get("inventory_dir", "."))) / path
            try:
                values.append(kraft.cluster_id(path))
            except (kraft.ClusterIdError, OSError) as error:
                raise AnsibleError(f"evilnet_kafka_cluster_id: {error}") from None
        return values
