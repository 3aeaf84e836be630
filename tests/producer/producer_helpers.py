"""What the producer tests share besides fixtures (imported as ``producer_helpers``)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml

from evilnet.producer.simulator import XApiSimulator
from evilnet.waiting import wait_for

TOKEN = "sim-token-5f1c0e"  # a test app's token; tests check it never leaks

RULES = [
    {"value": "(hockey OR #habs) Montréal", "tag": "city=Montréal;topic=hockey"},
    {"value": "(poutine OR food) Montréal", "tag": "city=Montréal;topic=food"},
    {"value": "food \"St. John's\"", "tag": "city=St. John's;topic=food"},
    {"value": "traffic Trois-Rivières", "tag": "city=Trois-Rivières;topic=traffic"},
]


@dataclass
class CollectingSink:
    """A RecordSink that keeps what it is given (routing tests; not a Kafka stand-in)."""

    sent: list[tuple[str, bytes | None, bytes]] = field(default_factory=list)
    closed: bool = False

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        self.sent.append((topic, key, value))

    def close(self, timeout: float) -> int:
        self.closed = True
        return 0


class Simulator:
    """The simulator in this process, and its admin API over HTTP as a test uses it."""

    def __init__(self, simulator: XApiSimulator) -> None:
        self.api = simulator
        self.base_url = simulator.base_url

    def fault(self, **fault: object) -> None:
        requests.post(f"{self.base_url}/_sim/faults", json=fault, timeout=5).raise_for_status()

    def generation(self, **settings: object) -> None:
        requests.post(f"{self.base_url}/_sim/generation", json=settings,
                      timeout=5).raise_for_status()

    def state(self) -> dict:
        return requests.get(f"{self.base_url}/_sim/state", timeout=5).json()

    def sent_payloads(self) -> list[bytes]:
        posts = requests.get(f"{self.base_url}/_sim/sent", timeout=5).json()["posts"]
        return [post["payload"].encode("utf-8") for post in posts]


def write_config(path: Path, **keys: object) -> Path:
    path.write_text(yaml.safe_dump(keys, allow_unicode=True), encoding="utf-8")
    return path


def wait_until(condition: Callable[[], bool], timeout: float = 30.0,
               what: str = "a condition") -> None:
    """Poll ``condition`` every 20 ms (the producer's own time scale is shortened in tests)."""
    wait_for(condition, timeout, what=what, interval=0.02)


def free_port() -> int:
    """A loopback port nothing listens on (until someone binds it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
