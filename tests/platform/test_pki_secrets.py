"""The per-inventory secrets (evilnet/platform/secrets.py) and the `evilnet pki` and
`evilnet secrets` commands: generated once, kept 0600, never printed, never in the plan.

The commands run as users run them, `evilnet -i INVENTORY ...` in a subprocess, on an
inventory each test writes (its CA and secrets beside it, as inventories/local keeps
them under .run/). No service is reached.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from pki_site import evilnet, write_inventory

from evilnet.platform import secrets


def _values(directory: Path) -> dict[str, str]:
    return {item.name: secrets.read(directory, item.name) for item in secrets.SECRETS}


def test_every_secret_is_generated_once_private_and_then_kept(tmp_path: Path) -> None:
    directory = tmp_path / "secrets"
    assert secrets.ensure_all(directory) == [item.name for item in secrets.SECRETS]
    values = _values(directory)
    assert len(set(values.values())) == len(values)
    for item in secrets.SECRETS:
        assert len(values[item.name]) >= 32 and values[item.name].isalnum()
        assert (directory / item.file).stat().st_mode & 0o777 == 0o600
    directories = [directory, *(path for path in directory.rglob("*") if path.is_dir())]
    assert {path.stat().st_mode & 0o777 for path in directories} == {0o700}
    (directory / secrets.secret("spark_auth_secret").file).chmod(0o644)
    assert secrets.ensure_all(directory) == []
    assert _values(directory) == values
    # A mode loosened by hand is tightened again, the value kept.
    assert (directory / secrets.secret("spark_auth_secret").file).stat().st_mode & 0o777 == 0o600


def test_writers_racing_for_one_secret_agree_on_one_value(tmp_path: Path) -> None:
    directory = tmp_path / "secrets"
    barrier = threading.Barrier(8)
    generated: list[bool] = []

    def generate() -> None:
        barrier.wait()
        generated.append(secrets.ensure(directory, "kafka_admin_password"))

    threads = [threading.Thread(target=generate) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert generated.count(True) == 1
    assert [path.name for path in (directory / "kafka").iterdir()] == ["admin.password"]


def test_an_unknown_secret_is_refused_by_name() -> None:
    with pytest.raises(secrets.SecretError, match="kafka_root_password: no such secret"):
        secrets.secret("kafka_root_password")


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every command of a site's first day, then a second day, and what each printed."""
    root = tmp_path_factory.mktemp("site")
    inventory = write_inventory(root)
    runs = {}
    for day in ("first", "second"):
        for command in (("secrets", "init"), ("secrets", "status"), ("pki", "init"),
                        ("pki", "issue"), ("pki", "issue", "--format", "json"),
                        ("pki", "status"), ("pki", "status", "--format", "json")):
            runs[(day, *command)] = evilnet(inventory, *command)
    runs[("plan",)] = evilnet(inventory, "plan", "--cities", "Toronto,Montréal",
                              "--topics", "hockey", "--out", str(root / "plan"))
    return {"root": root, "inventory": inventory, "runs": runs}


def test_the_commands_succeed_and_the_second_day_changes_nothing(ran: dict) -> None:
    runs = ran["runs"]
    for key, result in runs.items():
        assert result.returncode == 0, (key, result.stdout, result.stderr)
    first = json.loads(runs[("first", "pki", "issue", "--format", "json")].stdout)
    # `pki issue` (table) issued everything just before: the JSON run found it all good.
    assert first == {"ca_created": False, "issued": [], "changed": False}
    assert "issued kafka1 zookeeper-client: missing" in runs[("first", "pki", "issue")].stdout
    assert "every certificate is good" in runs[("second", "pki", "issue")].stdout
    assert "0 generated" in runs[("second", "secrets", "init")].stdout
    status = json.loads(runs[("second", "pki", "status", "--format", "json")].stdout)
    assert status["healthy"] is True
    assert {(row["host"], row["name"]) for row in status["certificates"]} == {
        ("zk1", "host"), ("kafka1", "host"), ("kafka1", "zookeeper-client"),
        ("producer1", "host"), ("", "controller")}
    assert next(row["names"] for row in status["certificates"]
                if row["host"] == "zk1") == ["DNS:zk1", "IP:127.0.2.1"]


def test_no_command_prints_a_secret_or_a_key_and_the_plan_holds_none(ran: dict) -> None:
    state = ran["root"] / "state"
    values = list(_values(state / "secrets").values())
    assert len(values) == len(secrets.SECRETS)
    keys = [path.read_text() for path in state.glob("pki/hosts/*/*.key")]
    key_lines = {line for key in keys for line in key.splitlines()[1:-1]}
    assert len(key_lines) > 50
    printed = "".join(result.stdout + result.stderr for result in ran["runs"].values())
    plan = "".join(path.read_text(errors="replace")
                   for path in (ran["root"] / "plan").rglob("*") if path.is_file())
    for text in (printed, plan):
        assert not [value for value in values if value in text]
        assert not [line for line in key_lines if line in text]
        assert "PRIVATE KEY" not in text


def test_secrets_status_exits_1_on_a_missing_or_loosened_file(tmp_path: Path) -> None:
    inventory = write_inventory(tmp_path)
    assert evilnet(inventory, "secrets", "status").returncode == 1
    assert evilnet(inventory, "secrets", "init").returncode == 0
    assert evilnet(inventory, "secrets", "status").returncode == 0
    loosened = tmp_path / "state" / "secrets" / secrets.secret("cassandra_reader_password").file
    loosened.chmod(0o640)
    result = evilnet(inventory, "secrets", "status", "--format", "json")
    assert result.returncode == 1
    row = next(row for row in json.loads(result.stdout)["secrets"]
               if row["name"] == "cassandra_reader_password")
    assert (row["mode"], row["private"]) == ("0640", False)


def test_state_inside_the_inventory_directory_is_refused(tmp_path: Path) -> None:
    # Ansible reads every file of an inventory directory as inventory: a secret there
    # would become a host name, printed by every run.
    inventory = write_inventory(tmp_path, evilnet_secrets_dir="secrets")
    result = evilnet(inventory, "secrets", "init")
    assert result.returncode == 2
    assert "inside the inventory directory" in result.stderr
    assert not (inventory / "secrets").exists()


def test_vault_inventories_take_their_values_on_stdin_only(tmp_path: Path) -> None:
    inventory = write_inventory(tmp_path, evilnet_secrets_source="vault",
                                evilnet_secrets_dir=None)
    refused = evilnet(inventory, "pki", "issue")
    assert refused.returncode == 2 and "--secrets-stdin" in refused.stderr
    assert evilnet(inventory, "secrets", "init").returncode == 2
    given = {"ca_passphrase": "passphrase-from-vault", "pki_store_password": "store-from-vault"}
    issued = evilnet(inventory, "pki", "issue", "--secrets-stdin", "--format", "json",
                     stdin=json.dumps(given))
    assert issued.returncode == 0, issued.stderr
    assert json.loads(issued.stdout)["ca_created"] is True
    ca_key = tmp_path / "state" / "pki" / "ca" / "ca.key"
    assert b"ENCRYPTED PRIVATE KEY" in ca_key.read_bytes()
    assert not (tmp_path / "state" / "secrets").exists()
    wrong = evilnet(inventory, "pki", "issue", "--secrets-stdin",
                    stdin=json.dumps({**given, "ca_passphrase": "guess"}))
    assert wrong.returncode == 2 and "wrong passphrase" in wrong.stderr
    for result in (issued, wrong):
        assert not any(value in result.stdout + result.stderr for value in given.values())


def _leaky_host(root: Path, value: str, key: str) -> dict[str, Path]:
    """A host root with a secret and a key where they may be and where they must not."""
    places = {"private config": root / "etc" / "kafka" / "jaas.conf",
              "readable config": root / "etc" / "kafka" / "server.properties",
              "log": root / "log" / "kafka" / "kafka.out",
              "private key": root / "etc" / "pki" / "host.key",
              "readable key": root / "etc" / "backup" / "host.key"}
    for name, path in places.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"sasl.jaas.config=... password=\"{value}\";\n" if "key" not in name
                        else key)
        path.chmod(0o600 if name in ("private config", "private key", "log") else 0o644)
    return places


def test_the_scan_finds_secrets_in_logs_readable_files_and_processes_only(
        tmp_path: Path) -> None:
    inventory = write_inventory(tmp_path)
    assert evilnet(inventory, "secrets", "init").returncode == 0
    directory = tmp_path / "state" / "secrets"
    value = secrets.read(directory, "kafka_broker_password")
    key = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"
    places = _leaky_host((tmp_path / "hosts" / "kafka1").resolve(), value, key)
    # A process that carries one on its command line and another in its environment.
    leaking = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", value],
        env={"LEAKED": secrets.read(directory, "spark_auth_secret")})
    try:
        result = evilnet(inventory, "secrets", "scan", "--format", "json")
    finally:
        leaking.kill()
        leaking.wait()
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    found = {(row["where"], row["secret"], row["why"]) for row in report["findings"]}
    assert {(str(places["readable config"]), "kafka/broker.password", "readable by others"),
            (str(places["log"]), "kafka/broker.password", "a log"),
            (str(places["readable key"]), "a private key", "readable by others")} <= found
    in_processes = {(secret, why) for where, secret, why in found
                    if where.startswith(f"pid {leaking.pid} ")}
    assert in_processes == {("kafka/broker.password", "a command line"),
                            ("spark/auth.secret", "an environment")}
    assert not {where for where, _, _ in found} & {str(places["private config"]),
                                                  str(places["private key"])}
    assert value not in result.stdout + result.stderr


def test_a_clean_site_scans_clean(tmp_path: Path) -> None:
    inventory = write_inventory(tmp_path)
    assert evilnet(inventory, "pki", "issue").returncode == 0
    (tmp_path / "hosts" / "zk1" / "log").mkdir(parents=True)
    (tmp_path / "hosts" / "zk1" / "log" / "zookeeper.out").write_text("started\n")
    # The whole site: the CA's and the secrets' own files are where they belong.
    result = evilnet(inventory, "secrets", "scan", str(tmp_path), "--no-processes")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("0 finding(s); 1 secrets looked for in 1 path(s)")
