"""Every subcommand, given bad input: one line on stderr, exit 2, never a traceback.

Exit 2 means "could not run" for every subcommand (README, "Addresses, errors and
exit status"); exit 1 keeps each command's own "no" (rows differ, unhealthy), so a
script can tell a broken connection from wrong numbers. Unreachable services are
closed ports on loopback and names under the reserved .invalid domain: nothing
leaves the machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
EVILNET = str(Path(sys.executable).with_name("evilnet"))
SAMPLE = REPO_ROOT / "evilnet" / "data" / "sample-posts.jsonl"

CLOSED = "127.0.0.1:1"  # nothing listens on port 1
FAR = "127.255.255.254"  # a loopback address no service of the stack uses
NOWHERE = "nohost.invalid"  # RFC 2606: never resolves
WINDOW = ["--from", "2026-12-01T09:00", "--to", "2026-12-01T10:00"]
TOPICS_SETTINGS = ["--replication-factor", "1", "--min-insync-replicas", "1",
                   "--tweets-partitions", "1", "--tweets-retention-ms", "600000",
                   "--dead-letter-partitions", "1", "--dead-letter-retention-ms", "600000"]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    files = {"garbage": folder / "garbage.json", "wrong": folder / "wrong.json",
             "list": folder / "list.json"}
    files["garbage"].write_bytes(bytes(range(128, 256)) * 4)
    files["wrong"].write_text('{"hosts": []}\n')
    files["list"].write_text('{"shards": [{"name": "app-1"}]}\n')
    return files


# (id, arguments, what the one line must say). {garbage}, {wrong}, {list}, {out} and
# {sample} are filled in per test.
NO_SERVICE_NEEDED = [
    ("query top, Cassandra closed port", ["query", "top", "--metric", "tweets",
                                          "--cassandra", CLOSED], "cannot connect to Cassandra"),
    ("query windows, far loopback", ["query", "windows", *WINDOW, "--cassandra", FAR],
     "cannot connect to Cassandra"),
    ("query progress, unresolvable", ["query", "progress", "--cassandra", NOWHERE],
     "cannot resolve"),
    ("query top, port not a number", ["query", "top", "--metric", "tweets",
                                      "--cassandra", "127.0.1.6:abc"], "port"),
    ("schema apply, unreachable", ["schema", "apply", "--cassandra", CLOSED],
     "cannot connect to Cassandra"),
    ("check, Cassandra unreachable", ["check", "{sample}", "--cassandra", CLOSED,
                                      "--bootstrap-servers", CLOSED], "cannot connect"),
    ("check --shift-to yesterday", ["check", "{sample}", "--shift-to", "yesterday"],
     "yesterday"),
    ("check, missing file", ["check", "/nonexistent/posts.jsonl"], "does not exist"),
    ("health cassandra a:b:c", ["health", "cassandra", "--cassandra", "a:b:c"], "a:b:c"),
    ("health kafka port abc", ["health", "kafka", "--bootstrap-servers", "127.0.1.4:abc"],
     "port"),
    ("health kafka no port", ["health", "kafka", "--bootstrap-servers", "127.0.1.4"],
     "no port"),
    ("health zookeeper bad member", ["health", "zookeeper", "--zookeeper", "x:1:2"], "x:1:2"),
    ("health spark not http", ["health", "spark", "--spark-master", "ftp://127.0.1.7"],
     "http"),
    ("health producers unknown shard", ["health", "producers", "--plan",
                                        "tests/planner/golden", "--shard", "app-9"], "app-9"),
    ("health stream-job bad time", ["health", "stream-job", "--newer-than", "soon"], "soon"),
    ("plan --diff, garbage deployed", ["plan", "--cities", "Toronto", "--topics", "hockey",
                                       "--diff", "--deployed", "{garbage}", "--out", "{out}"],
     "not UTF-8"),
    ("plan --diff, wrong JSON", ["plan", "--cities", "Toronto", "--topics", "hockey", "--diff",
                                 "--deployed", "{wrong}", "--out", "{out}"], "shards"),
    ("plan --diff, shards without rules", ["plan", "--cities", "Toronto", "--topics", "hockey",
                                           "--diff", "--deployed", "{list}", "--out", "{out}"],
     "rules"),
    ("plan, no such inventory", ["-i", "/nonexistent", "plan", "--cities", "Toronto",
                                 "--topics", "hockey"], "/nonexistent"),
    ("status, no such inventory", ["-i", "/nonexistent", "status"], "/nonexistent"),
    ("footprint, no such inventory", ["footprint", "-i", "/nonexistent"], "/nonexistent"),
    ("stream-rules, no such inventory", ["-i", "/nonexistent", "stream-rules", "validate",
                                         "--cities", "Toronto", "--topics", "x"],
     "/nonexistent"),
    ("render, no plan", ["render", "/nonexistent"], "does not exist"),
    ("topics ensure, unresolvable", ["topics", "ensure", "--bootstrap-servers",
                                     f"{NOWHERE}:9092", *TOPICS_SETTINGS], "Kafka"),
    ("fidelity, --to before --from", ["fidelity", "--from", "2026-12-01T10:00", "--to",
                                      "2026-12-01T09:00", "--bootstrap-servers", CLOSED],
     "--to"),
    ("query, no inventory outside the project", ["query", "top", "--metric", "tweets"],
     "no inventory"),
    ("unknown option", ["query", "top", "--nope"], "--nope"),
]

# Every command's Kafka client, given a broker address nobody listens on.
KAFKA_UNREACHABLE = [
    ("replay", ["replay", "{sample}", "--bootstrap-servers", CLOSED]),
    ("topics ensure", ["topics", "ensure", "--bootstrap-servers", CLOSED, *TOPICS_SETTINGS]),
    ("topics list", ["topics", "list", "--bootstrap-servers", CLOSED]),
    ("topics describe", ["topics", "describe", "--bootstrap-servers", CLOSED]),
    ("fidelity", ["fidelity", *WINDOW, "--bootstrap-servers", CLOSED]),
]
# An unreachable broker is an error within seconds (kafka-python alone waits 30 s):
# the command's start, its client's bootstrap wait, and room for a loaded machine.
KAFKA_FAILS_WITHIN_SECONDS = 15

# Against the running stack: the inventory's services, with one thing wrong.
ON_THE_STACK = [
    ("query top, wrong keyspace", ["query", "top", "--metric", "tweets", "--keyspace", "nope"],
     "keyspace nope does not exist"),
    ("query windows, wrong port", ["query", "windows", *WINDOW, "--cassandra", "127.0.1.6:9043"],
     "127.0.1.6:9043"),
    ("check, broker unreachable", ["check", "{sample}", "--bootstrap-servers", CLOSED],
     "Kafka"),
]


def _run(arguments: list[str], files: dict[str, Path], tmp_path: Path,
         cwd: Path = REPO_ROOT) -> tuple[subprocess.CompletedProcess, float]:
    filled = [a.format(sample=SAMPLE, out=tmp_path / "plan", **files) for a in arguments]
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("EVILNET_") and key != "ANSIBLE_INVENTORY"}
    started = time.monotonic()
    result = subprocess.run([EVILNET, *filled], capture_output=True, text=True, cwd=cwd,
                            env={**env, "NO_COLOR": "1", "COLUMNS": "200"}, timeout=120,
                            check=False)
    return result, time.monotonic() - started


def _assert_one_line(result: subprocess.CompletedProcess, command: str, says: str) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert lines[0].startswith(f"evilnet {command}: ") or lines[0].startswith("evilnet: "), lines
    assert says in lines[0], lines[0]


def _command(arguments: list[str]) -> str:
    """The subcommand the line must name: ``evilnet query top: …``."""
    words = arguments[2:] if arguments[0] == "-i" else arguments
    groups = {"query", "schema", "health", "topics", "stream-rules"}
    return " ".join(words[:2]) if words[0] in groups else words[0]


@pytest.mark.parametrize(("name", "arguments", "says"), NO_SERVICE_NEEDED,
                         ids=[name for name, _, _ in NO_SERVICE_NEEDED])
def test_bad_input_is_one_line_and_exit_2(name: str, arguments: list[str], says: str,
                                          bad_files: dict[str, Path], tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    result, seconds = _run(arguments, bad_files, tmp_path,
                           cwd=outside if "outside the project" in name else REPO_ROOT)
    _assert_one_line(result, _command(arguments), says)
    assert seconds < 40, f"took {seconds:.0f} s to fail"
    assert not (tmp_path / "plan").exists(), "plan wrote files before failing"


@pytest.mark.parametrize("arguments", [a for _, a in KAFKA_UNREACHABLE],
                         ids=[name for name, _ in KAFKA_UNREACHABLE])
def test_an_unreachable_broker_is_one_line_within_seconds(
        arguments: list[str], bad_files: dict[str, Path], tmp_path: Path) -> None:
    result, seconds = _run(arguments, bad_files, tmp_path)
    _assert_one_line(result, _command(arguments), "cannot connect to Kafka: ")
    assert result.stderr.rstrip().endswith(f"({CLOSED})"), result.stderr
    assert seconds < KAFKA_FAILS_WITHIN_SECONDS, f"took {seconds:.0f} s to fail"


@pytest.mark.parametrize(("arguments", "says"), [(a, s) for _, a, s in ON_THE_STACK],
                         ids=[name for name, _, _ in ON_THE_STACK])
def test_bad_input_against_the_stack_is_one_line_and_exit_2(
        stack, arguments: list[str], says: str, bad_files: dict[str, Path],
        tmp_path: Path) -> None:
    result, seconds = _run(arguments, bad_files, tmp_path)
    _assert_one_line(result, _command(arguments), says)
    assert seconds < 20, f"took {seconds:.0f} s to fail (short timeouts, not 30 s)"


def test_exit_1_keeps_its_meaning_for_health(bad_files: dict[str, Path],
                                             tmp_path: Path) -> None:
    """A service that does not answer is unhealthy (1), not "could not run" (2)."""
    result, _ = _run(["health", "cassandra", "--cassandra", CLOSED], bad_files, tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
