"""The Python contracts as Ansible sees them: the generated vars file is current, carries
the contracts' values, every play gets it on every inventory, and no role writes a
contract value of its own."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from evilnet.contracts import DEAD_LETTER_TOPIC, DEFAULT_ACCESS_LEVEL, TWEETS_TOPIC
from evilnet.producer import metrics as producer_metrics
from evilnet.schema import KEYSPACE
from evilnet.spark import metrics as job_metrics

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GENERATOR = REPO_ROOT / "ansible" / "generate_contracts.py"
PLAYBOOKS = REPO_ROOT / "ansible" / "playbooks"
VARS_FILE = PLAYBOOKS / "group_vars" / "all" / "contracts.yml"
ROLES = REPO_ROOT / "ansible" / "roles"
METRIC_NAMES = [producer_metrics.POSTS_RECEIVED, producer_metrics.RECORDS_PRODUCED,
                producer_metrics.PRODUCE_ERRORS, producer_metrics.DEAD_LETTERS,
                producer_metrics.RECONNECTS, producer_metrics.PRODUCE_LATENCY,
                producer_metrics.STREAM_CONNECTED, producer_metrics.RULE_CHANGES,
                producer_metrics.DISCONNECTS, producer_metrics.CONNECTION_ISSUES,
                producer_metrics.USAGE_CAPPED, producer_metrics.USAGE_CAP_RESUME,
                producer_metrics.MONTHLY_POST_CAP, producer_metrics.POSTS_DELIVERED,
                job_metrics.BATCH_DURATION, job_metrics.TRIGGER, job_metrics.END_OFFSET,
                job_metrics.INPUT_ROWS, job_metrics.BAD_RECORDS, job_metrics.LAST_PROGRESS,
                job_metrics.STARTED, job_metrics.KAFKA_LOG_END_OFFSET]
# What each role default that carries a contract value must resolve to in a play.
ROLE_DEFAULTS = {
    ("cassandra", "cassandra_keyspace"): KEYSPACE,
    ("grafana", "grafana_cassandra_keyspace"): KEYSPACE,
    ("jmx_exporter", "jmx_exporter_cassandra_keyspace"): KEYSPACE,
    ("stream_job", "stream_job_keyspace"): KEYSPACE,
    ("stream_job", "stream_job_topic"): TWEETS_TOPIC,
    ("prometheus", "prometheus_tweets_topic"): TWEETS_TOPIC,
    # A host outside the producers group has no planner_access_level of the inventory.
    ("x_api_simulator", "x_api_simulator_access_level"): DEFAULT_ACCESS_LEVEL,
}


def _generate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(GENERATOR), *args], capture_output=True,
                          text=True, timeout=120, check=False)


def test_the_checked_in_vars_file_is_what_the_contracts_generate(tmp_path: Path) -> None:
    current = _generate("--check")
    assert current.returncode == 0, current.stderr
    # A stale copy is reported, with the command that regenerates it.
    stale = tmp_path / "contracts.yml"
    stale.write_text(VARS_FILE.read_text("utf-8").replace(
        f"evilnet_contract_keyspace: {KEYSPACE}\n", "evilnet_contract_keyspace: renamed\n"))
    refused = _generate("--check", "--out", str(stale))
    assert refused.returncode == 1
    assert "differs" in refused.stderr and "ansible/generate_contracts.py" in refused.stderr


def test_the_vars_file_carries_the_python_contracts() -> None:
    variables = yaml.safe_load(VARS_FILE.read_text("utf-8"))
    assert variables["evilnet_contract_tweets_topic"] == TWEETS_TOPIC
    assert variables["evilnet_contract_dead_letter_topic"] == DEAD_LETTER_TOPIC
    assert variables["evilnet_contract_keyspace"] == KEYSPACE
    assert variables["evilnet_contract_default_access_level"] == DEFAULT_ACCESS_LEVEL
    producer, job = (variables["evilnet_contract_producer_metrics"],
                     variables["evilnet_contract_job_metrics"])
    assert producer["dead_letters"] == producer_metrics.DEAD_LETTERS
    assert producer["stream_connected"] == producer_metrics.STREAM_CONNECTED
    assert job["end_offset"] == job_metrics.END_OFFSET
    assert job["kafka_log_end_offset"] == job_metrics.KAFKA_LOG_END_OFFSET
    assert sorted([*producer.values(), *job.values()]) == sorted(
        [*METRIC_NAMES, producer_metrics.INFO])


def test_site_yml_is_made_of_the_playbooks_that_get_the_vars_file() -> None:
    # Ansible reads group_vars beside a playbook for its plays, and beside an
    # imported playbook for the imported plays: site.yml's plays must all be imports
    # of ansible/playbooks/ for them to see the contracts.
    for play in yaml.safe_load((REPO_ROOT / "ansible" / "site.yml").read_text("utf-8")):
        imported = (REPO_ROOT / "ansible" / play["ansible.builtin.import_playbook"]).resolve()
        assert imported.parent == PLAYBOOKS and imported.exists(), play


@pytest.mark.parametrize(("inventory", "host"), [("local", "monitor"),
                                                 ("production", "monitor.evilnet.internal")])
def test_role_defaults_resolve_to_the_contracts_on_every_inventory(inventory: str,
                                                                   host: str) -> None:
    # What a play of ansible/playbooks/ sees: its group_vars, then the role's defaults.
    defaults = [f"--extra-vars=@{ROLES / role / 'defaults' / 'main.yml'}"
                for role in sorted({role for role, _ in ROLE_DEFAULTS})]
    names = [name for _, name in ROLE_DEFAULTS]
    shown = subprocess.run(
        [str(BIN / "ansible"), "-i", f"inventories/{inventory}", host,
         "--playbook-dir", str(PLAYBOOKS), *defaults, "-m", "ansible.builtin.debug",
         "-a", "msg={{ {" + ", ".join(f"'{n}': {n}" for n in names) + "} | to_json }}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"),
             "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "json"})
    assert shown.returncode == 0, shown.stdout + shown.stderr
    result = json.loads(shown.stdout)["plays"][0]["tasks"][0]["hosts"][host]
    assert json.loads(result["msg"]) == {name: value for (_, name), value in ROLE_DEFAULTS.items()}


def _without_comments(text: str) -> str:
    """YAML comments dropped (Jinja's ``{# #}`` and PromQL have no ``#`` after a space)."""
    return re.sub(r"(^|\s)#.*$", "", text, flags=re.MULTILINE)


def _ansible_files() -> list[Path]:
    files = [*ROLES.glob("*/defaults/*.yml"), *ROLES.glob("*/vars/*.yml"),
             *ROLES.glob("*/tasks/*.yml"), *ROLES.glob("*/handlers/*.yml"),
             *ROLES.glob("*/templates/*"), *PLAYBOOKS.glob("*.yml"),
             *(REPO_ROOT / "inventories").rglob("*.yml")]
    return [path for path in files if path != VARS_FILE]


def test_no_role_inventory_or_playbook_writes_a_metric_name_itself() -> None:
    # A name written out, not a key of evilnet_contract_*_metrics (``.kafka_log_end_offset``).
    names = re.compile(r"(?<![.\w])(" + "|".join(map(re.escape, METRIC_NAMES)) + r")\b")
    found = [f"{path.relative_to(REPO_ROOT)}: {match[0]}" for path in _ansible_files()
             for match in names.finditer(_without_comments(path.read_text("utf-8")))]
    assert found == [], "name them through evilnet_contract_*_metrics instead"


def test_no_role_inventory_or_playbook_sets_a_topic_or_keyspace_itself() -> None:
    def literal(key: str, value: object) -> bool:
        return value in (TWEETS_TOPIC, DEAD_LETTER_TOPIC) or (
            "keyspace" in key and value == KEYSPACE)

    def walk(node: object, key: str = "") -> list[str]:
        if isinstance(node, dict):
            return [found for k, v in node.items() for found in walk(v, str(k))]
        if isinstance(node, list):
            return [found for item in node for found in walk(item, key)]
        return [f"{key}: {node}"] if literal(key, node) else []

    found = [f"{path.relative_to(REPO_ROOT)}: {hit}" for path in _ansible_files()
             if path.suffix == ".yml" for hit in walk(yaml.safe_load(path.read_text("utf-8")))]
    assert found == [], "use evilnet_contract_tweets_topic / _dead_letter_topic / _keyspace"
