"""How long a command's Kafka client waits for a broker: the one home of the number.

kafka-python waits 30 s for its first broker (``bootstrap_timeout_ms``), in the
constructor of a producer or admin client and at a consumer's first request, so a
command given an address nobody listens on sat for half a minute before its error.
Every ``evilnet`` command opens its clients (consumer, producer or admin alike)
with :data:`COMMAND_CLIENT`: it gives up after BOOTSTRAP_TIMEOUT_MS and says so in
one line (evilnet.cli). The long-running producer service keeps kafka-python's
wait: supervisord restarts it, and a broker a few seconds late is no error there.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

# Milliseconds to wait for the first broker of the bootstrap list to answer: a
# broker on a loaded machine answers within a second; nothing answers a closed port.
BOOTSTRAP_TIMEOUT_MS = 5_000

# kafka-python settings for the clients of a command (pass as **COMMAND_CLIENT).
COMMAND_CLIENT: Mapping[str, int] = MappingProxyType(
    {"bootstrap_timeout_ms": BOOTSTRAP_TIMEOUT_MS})
