"""Every role states what it accepts (meta/argument_specs.yml), and a bad value is
refused with the variable's name: by the preflight play, before any host is touched,
and by Ansible itself when the role starts.

Nothing here reaches a host: the preflight play only asserts and validates, and the
role-start checks run on copies of the roles that keep their specs and defaults but
no tasks.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from evilnet.platform.playbook import PlaybookRun, run_playbook

REPO_ROOT = Path(__file__).resolve().parents[2]
ANSIBLE = REPO_ROOT / "ansible"
ROLES = ANSIBLE / "roles"
LOCAL = REPO_ROOT / "inventories" / "local"
PRODUCTION = REPO_ROOT / "inventories" / "production"
# The test bed's inventory, as it is: preflight contacts no host, so the bed need not be up.
CLUSTER = REPO_ROOT / "inventories" / "cluster"
ROLE_NAMES = sorted(path.parent.name for path in ROLES.glob("*/tasks"))
VALIDATION_TASK = "Validating arguments against arg spec"
PREFLIGHT_TASK = ("preflight : Check the host's variables against the argument spec"
                  " of each role it plays")
# The production example keeps secrets in Ansible Vault; its hosts are not reached.
PRODUCTION_ARGS = ("-e", "ansible_connection=local", "-e", "ansible_become=false",
                   "-e", "vault_grafana_admin_password=a-long-enough-secret",
                   "-e", "vault_grafana_apt_repository=deb https://apt.example/ stable main",
                   "-e", "vault_grafana_apt_key_url=https://apt.example/gpg.key")
# What the service role's per-service entry points need from the including role.
SERVICE_INPUTS = {"service_name": "probe", "service_command": "/bin/true",
                  "service_notify": "Restart probe"}

# One bad value per role: a wrong type, an unknown choice, or a list or dict that
# breaks the spec of its items.
BAD_VALUES = {
    "cassandra": ("cassandra_memtable_allocation_type", "offheap"),
    "grafana": ("grafana_port", "three-thousand"),
    "java": ("java_major_version", "seventeen"),
    "jmx_exporter": ("jmx_exporter_services", ["kafka", "hbase"]),
    "kafka": ("kafka_tweets_partitions", "many"),
    "producer": ("producer_runner", "kubernetes"),
    "prometheus": ("prometheus_jmx_exporter_ports", {"zookeeper": 7070, "kafka": 7071}),
    "runtime": ("runtime_compile_bytecode", "maybe"),
    "service": ("service_manager", "upstart"),
    "spark": ("spark_log_level", "VERBOSE"),
    "staged_packages": ("staged_packages_cache_valid_time", "a day"),
    "stream_job": ("stream_job_state", "gone"),
    "x_api_simulator": ("x_api_simulator_rate", "fast"),
    "zookeeper": ("zookeeper_4lw_whitelist", ["ruok", "nope"]),
    # Checked by Ansible when the preflight role itself starts.
    "preflight": ("preflight_required_unique_vars", "zookeeper"),
}


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def _specs(role: str) -> dict:
    return _load(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]


def _refused(output: str, variable: str) -> bool:
    """Whether Ansible's validation refused ``variable`` by name (its messages for a
    wrong type, an unknown choice, a missing required argument or sub-option)."""
    name = re.escape(variable)
    return re.search(rf"argument '{name}' is of type|value of {name} must be"
                     rf"|missing required arguments: [^\n]*\b{name}\b|found in {name}\b",
                     output) is not None


def _extra_vars(tmp_path: Path, values: dict) -> tuple[str, ...]:
    path = tmp_path / "extra-vars.yml"
    path.write_text(yaml.safe_dump(values))
    return ("-e", f"@{path}")


# The spec files themselves.

@pytest.mark.parametrize("role", ROLE_NAMES)
def test_the_spec_covers_exactly_the_role_defaults(role: str) -> None:
    specs = _specs(role)
    defaults = set(_load(ROLES / role / "defaults" / "main.yml"))
    assert set(specs["main"]["options"]) == defaults
    for entry_point, spec in specs.items():
        assert defaults <= set(spec["options"]), entry_point
        for name, option in spec["options"].items():
            assert option.get("type") and option.get("description"), (entry_point, name)
            # YAML reads an unquoted OFF or NO as a boolean.
            assert all(isinstance(choice, str) for choice in option.get("choices", [])), name
            # Defaults have one home, defaults/main.yml.
            assert "default" not in option, (entry_point, name)


def _service_default(name: str) -> object:
    return _load(ROLES / "service" / "defaults" / "main.yml")[name]


def _role_inclusions(node: object) -> set[tuple[str, str]]:
    """(role, tasks file) of every include_role/import_role under ``node`` that names
    both literally, and the health checks the service role's `run` is told to run."""
    found: set[tuple[str, str]] = set()
    if isinstance(node, list):
        for item in node:
            found |= _role_inclusions(item)
    elif isinstance(node, dict):
        for key in ("ansible.builtin.include_role", "ansible.builtin.import_role"):
            if key in node and "{{" not in node[key]["name"]:
                found.add((node[key]["name"], node[key].get("tasks_from", "main")))
        given = node.get("vars") or {}
        if isinstance(given, dict) and given.get("service_health_role"):
            tasks_from = given.get("service_health_tasks_from",
                                   _service_default("service_health_tasks_from"))
            found.add((given["service_health_role"], tasks_from))
        for value in node.values():
            found |= _role_inclusions(value)
    return found


def test_every_entry_point_is_a_tasks_file_and_every_role_entry_has_one() -> None:
    inclusions = set()
    for path in [ANSIBLE / "site.yml", *ANSIBLE.glob("playbooks/*.yml"),
                 *ROLES.glob("*/tasks/*.yml"), *ROLES.glob("*/handlers/*.yml")]:
        inclusions |= _role_inclusions(_load(path))
    assert inclusions, "no include_role found: the scan is broken"
    missing = sorted((role, entry) for role, entry in inclusions if entry not in _specs(role))
    assert missing == [], "entered with tasks_from but no entry point in meta/argument_specs.yml"
    stale = sorted((role, entry) for role in ROLE_NAMES for entry in _specs(role)
                   if not (ROLES / role / "tasks" / f"{entry}.yml").is_file())
    assert stale == [], "entry points without a tasks file"


def _site_plays(path: Path):
    for play in _load(path):
        if "ansible.builtin.import_playbook" in play:
            yield from _site_plays(path.parent / play["ansible.builtin.import_playbook"])
        else:
            yield play


def _with_included_roles(role: str, seen: set[str]) -> set[str]:
    if role not in seen:
        seen.add(role)
        for path in [*(ROLES / role).glob("tasks/*.yml"), *(ROLES / role).glob("handlers/*.yml")]:
            for included, _ in _role_inclusions(_load(path)):
                _with_included_roles(included, seen)
    return seen


def test_preflight_checks_each_group_against_the_roles_its_plays_run() -> None:
    played: dict[str, set[str]] = {}
    for play in _site_plays(ANSIBLE / "site.yml"):
        roles: set[str] = set()
        for entry in play.get("roles", []):
            _with_included_roles(entry["role"] if isinstance(entry, dict) else entry, roles)
        for role, _ in _role_inclusions(play.get("tasks", [])):
            _with_included_roles(role, roles)
        for pattern in play["hosts"].split(":"):
            if pattern and pattern[0] not in "!&":
                played.setdefault(re.sub(r"\[.*\]$", "", pattern), set()).update(roles)
    # The preflight role checks itself: Ansible validates it when it starts.
    played = {group: roles - {"preflight"} for group, roles in played.items()
              if roles - {"preflight"}}
    configured = _load(ROLES / "preflight" / "defaults" / "main.yml")["preflight_group_roles"]
    assert {group: set(roles) for group, roles in configured.items()} == played


# The preflight play: the inventory's values, before any host is touched.

def test_site_yml_starts_with_the_preflight_play_and_stops_on_its_first_failure() -> None:
    first = _load(ANSIBLE / "site.yml")[0]
    assert first["ansible.builtin.import_playbook"] == "playbooks/preflight.yml"
    (preflight,) = _load(ANSIBLE / "playbooks" / "preflight.yml")
    assert preflight["hosts"] == "all" and preflight["any_errors_fatal"] is True


def _preflight(*inventories: Path, extra_args: tuple[str, ...] = ()) -> PlaybookRun:
    return run_playbook("ansible/playbooks/preflight.yml", *inventories, project_dir=REPO_ROOT,
                        extra_args=extra_args, timeout=300)


@pytest.fixture(scope="module")
def preflight_with_bad_values(tmp_path_factory: pytest.TempPathFactory) -> PlaybookRun:
    values = {name: value for role, (name, value) in BAD_VALUES.items() if role != "preflight"}
    return _preflight(LOCAL, extra_args=_extra_vars(tmp_path_factory.mktemp("bad"), values))


@pytest.mark.parametrize("role", sorted(set(BAD_VALUES) - {"preflight"}))
def test_preflight_refuses_a_bad_value_naming_the_variable(
        preflight_with_bad_values: PlaybookRun, role: str) -> None:
    run = preflight_with_bad_values
    variable = BAD_VALUES[role][0]
    assert run.returncode != 0
    assert _refused(run.output, variable), f"{variable} not named:\n{run.output[-3000:]}"
    assert ("failed" in {status for task, status, _ in run.events() if task == PREFLIGHT_TASK})


def test_preflight_refuses_a_bad_value_of_its_own(tmp_path: Path) -> None:
    variable, value = BAD_VALUES["preflight"]
    run = _preflight(LOCAL, extra_args=_extra_vars(tmp_path, {variable: value}))
    assert run.returncode != 0
    assert _refused(run.output, variable), run.output[-3000:]


@pytest.mark.parametrize(("inventory", "extra_args"),
                         [(LOCAL, ()), (PRODUCTION, PRODUCTION_ARGS), (CLUSTER, ())],
                         ids=["local", "production", "cluster"])
def test_preflight_passes_the_inventories_as_they_are(inventory: Path, extra_args: tuple) -> None:
    run = _preflight(inventory, extra_args=extra_args)
    assert run.returncode == 0, run.output[-3000:]
    # Every host of a group that plays a role was checked.
    groups = set(_load(ROLES / "preflight" / "defaults" / "main.yml")["preflight_group_roles"])
    hosts = _load(inventory / "hosts.yml")["all"]["children"]
    expected = {host for group in groups for host in hosts.get(group, {}).get("hosts") or {}}
    checked = {host for task, status, host in run.events()
               if task == PREFLIGHT_TASK and status == "ok"}
    assert checked == expected


# Ansible's own check when a role starts: the roles' specs and defaults as they are,
# without their tasks.

def _roles_without_tasks(tmp_path: Path) -> Path:
    """A directory for a playbook: copies of every role's argument spec and defaults,
    an empty tasks file per entry point, and the playbooks' group_vars."""
    for role in ROLE_NAMES:
        copy = tmp_path / "roles" / role
        for part in ("meta/argument_specs.yml", "defaults/main.yml"):
            (copy / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROLES / role / part, copy / part)
        (copy / "tasks").mkdir()
        for entry_point in _specs(role):
            (copy / "tasks" / f"{entry_point}.yml").write_text("---\n[]\n")
    shutil.copytree(ANSIBLE / "playbooks" / "group_vars", tmp_path / "group_vars")
    return tmp_path


def _distinct_entry_points(role: str) -> list[str]:
    """The role's entry points, one per set of options (most repeat main's)."""
    kept: dict[str, dict] = {}
    for entry_point, spec in _specs(role).items():
        if spec["options"] not in kept.values():
            kept[entry_point] = spec["options"]
    return list(kept)


def _entry_play(hosts: str, role: str, entry_points, extra_vars: dict | None = None) -> dict:
    return {"name": f"{role} on {hosts}", "hosts": hosts, "gather_facts": False, "tasks": [
        {"name": f"{role} {entry_point}", "vars": extra_vars or {},
         "ansible.builtin.include_role": {"name": role, "tasks_from": entry_point}}
        for entry_point in entry_points]}


def _run_plays(directory: Path, plays: list[dict], *inventories: Path,
               extra_args: tuple[str, ...] = ()) -> PlaybookRun:
    playbook = directory / "entry-points.yml"
    playbook.write_text(yaml.safe_dump(plays, allow_unicode=True))
    return run_playbook(playbook, *inventories, project_dir=REPO_ROOT, extra_args=extra_args,
                        timeout=300)


@pytest.mark.parametrize(("inventory", "extra_args"), [(LOCAL, ()), (PRODUCTION, PRODUCTION_ARGS)],
                         ids=["local", "production"])
def test_every_entry_point_accepts_the_role_defaults_on_the_inventories(
        tmp_path: Path, inventory: Path, extra_args: tuple) -> None:
    group_roles = _load(ROLES / "preflight" / "defaults" / "main.yml")["preflight_group_roles"]
    plays = [_entry_play("all", "preflight", _distinct_entry_points("preflight"))]
    for role in ROLE_NAMES:
        groups = ":".join(sorted(group for group, roles in group_roles.items() if role in roles))
        if groups:
            plays.append(_entry_play(groups, role, _distinct_entry_points(role),
                                     SERVICE_INPUTS if role == "service" else None))
    run = _run_plays(_roles_without_tasks(tmp_path), plays, inventory, extra_args=extra_args)
    assert run.returncode == 0, run.output[-3000:]
    validated = {task.split(" : ", 1)[0] + " " + re.search(r"arg spec '([^']+)'", task)[1]
                 for task, status, _ in run.events() if VALIDATION_TASK in task and status == "ok"}
    expected = {f"{role} {entry_point}" for play in plays for task in play["tasks"]
                for role, entry_point in [task["name"].split(" ")]}
    assert validated == expected


@pytest.mark.parametrize(("plays", "variable"), [
    # zookeeper_id has no default: a host that does not set it is refused. (The
    # kafka role's kafka_broker_id is refused by the role's first task instead: a
    # dedicated KRaft controller has none, which an argument spec cannot say.)
    ([_entry_play("producers", "zookeeper", ["main"])], "zookeeper_id"),
    # The service role's define needs the including role's command.
    ([_entry_play("monitor", "service", ["define"],
                  {"service_name": "probe", "service_notify": "Restart probe"})],
     "service_command"),
], ids=["missing-required", "missing-entry-point-input"])
def test_a_role_refuses_a_missing_required_variable_when_it_starts(
        tmp_path: Path, plays: list[dict], variable: str) -> None:
    run = _run_plays(_roles_without_tasks(tmp_path), plays, LOCAL)
    assert run.returncode != 0
    assert _refused(run.output, variable), run.output[-3000:]


def test_a_role_refuses_a_wrong_type_when_it_starts(tmp_path: Path) -> None:
    variable, value = "zookeeper_tick_time", "2s"
    plays = [_entry_play("zookeeper", "zookeeper", ["main"])]
    run = _run_plays(_roles_without_tasks(tmp_path), plays, LOCAL,
                     extra_args=_extra_vars(tmp_path, {variable: value}))
    assert run.returncode != 0
    assert _refused(run.output, variable), run.output[-3000:]
