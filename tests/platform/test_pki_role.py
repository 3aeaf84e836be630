"""The pki role and lookup('evilnet_secret'), run by ansible-playbook on a small site of
local-connection hosts (tests/platform/pki_site.py): each host gets its own key and
certificates and nobody else's, private files 0600, a second run changes nothing, a
rotation notifies the including role's handlers on that host only, and neither the
role's output nor the lookup shows a secret. No service is involved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pki_site import HOSTS, REPO_ROOT, evilnet, write_inventory

from evilnet.platform import secrets
from evilnet.platform.playbook import PlaybookRun, run_playbook

SITE_HOSTS = sorted(host for hosts in HOSTS.values() for host in hosts)
ROTATED = "Rotated"


def _playbook(directory: Path) -> Path:
    """The way a service role will use it: the controller step, then the host step with
    the service's handler."""
    path = directory / "pki-hook.yml"
    path.write_text(yaml.safe_dump([{
        "name": "Certificates with a handler hook", "hosts": "all", "gather_facts": False,
        "tasks": [
            {"name": "Issue", "ansible.builtin.include_role": {
                "name": "pki", "tasks_from": "controller"}},
            {"name": "Ship", "ansible.builtin.include_role": {
                "name": "pki", "tasks_from": "host"}, "vars": {"pki_notify": [ROTATED]}},
            {"name": "Say whether the files rotated", "ansible.builtin.debug": {
                "msg": "pki_rotated={{ pki_rotated }}"}}],
        "handlers": [{"name": ROTATED, "ansible.builtin.debug": {"msg": "restart"}}]}]))
    return path


def _run(playbook: Path | str, inventory: Path, *extra: str) -> PlaybookRun:
    run = run_playbook(playbook, inventory, project_dir=REPO_ROOT, extra_args=extra,
                       timeout=600)
    assert run.returncode == 0, run.output[-3000:]
    return run


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("pki-role")
    inventory = write_inventory(root)
    playbook = _playbook(root)
    first = _run("ansible/playbooks/pki.yml", inventory)
    second = _run(playbook, inventory)
    assert evilnet(inventory, "pki", "issue", "--force", "zk1").returncode == 0
    rotated = _run(playbook, inventory)
    return {"root": root, "runs": [first, second, rotated]}


def _host_dir(site: dict, host: str) -> Path:
    return site["root"] / "hosts" / host / "etc" / "pki"


def test_each_host_gets_its_own_files_only_with_private_keys(site: dict) -> None:
    controller = site["root"] / "state" / "pki"
    for host in SITE_HOSTS:
        shipped = {path.name: path for path in _host_dir(site, host).iterdir()}
        own = {path.name for path in (controller / "hosts" / host).iterdir()}
        assert set(shipped) == own | {"ca.crt", "truststore.p12"}
        assert ("zookeeper-client.key" in own) == (host in HOSTS["kafka"])
        for name, path in shipped.items():
            expected = 0o644 if name.endswith(".crt") or name == "truststore.p12" else 0o600
            assert path.stat().st_mode & 0o777 == expected, name
            source = (controller / name if name in ("ca.crt", "truststore.p12")
                      else controller / "hosts" / host / name)
            assert path.read_bytes() == source.read_bytes(), name
        assert _host_dir(site, host).stat().st_mode & 0o777 == 0o700
    # No host holds another's key.
    keys = {host: (_host_dir(site, host) / "host.key").read_bytes() for host in SITE_HOSTS}
    assert len(set(keys.values())) == len(SITE_HOSTS)


def test_the_second_run_changes_nothing(site: dict) -> None:
    first, second, _ = site["runs"]
    assert all(counts["changed"] > 0 for counts in first.recap().values())
    assert {host: counts["changed"] for host, counts in second.recap().items()} == {
        host: 0 for host in SITE_HOSTS}
    assert ROTATED not in {task for task, _, _ in second.events()}


def test_a_rotation_ships_the_new_files_and_notifies_that_host_only(site: dict) -> None:
    *_, rotated = site["runs"]
    notified = {host for task, status, host in rotated.events()
                if task == ROTATED and status == "ok"}
    assert notified == {"zk1"}
    changed = {host for host, counts in rotated.recap().items() if counts["changed"]}
    # The controller step (run once) reports on the first host; only zk1 shipped.
    assert changed - {SITE_HOSTS[0]} == {"zk1"}
    assert "pki_rotated=True" in rotated.output and "pki_rotated=False" in rotated.output
    controller_key = site["root"] / "state" / "pki" / "hosts" / "zk1" / "host.key"
    assert (_host_dir(site, "zk1") / "host.key").read_bytes() == controller_key.read_bytes()


def test_no_run_shows_a_secret_or_a_key(site: dict) -> None:
    state = site["root"] / "state"
    values = [secrets.read(state / "secrets", item.name) for item in secrets.SECRETS
              if (state / "secrets" / item.file).exists()]
    assert values  # the store password at least
    key_lines = {line for path in state.glob("pki/hosts/*/*.key")
                 for line in path.read_text().splitlines()[1:-1]}
    for run in site["runs"]:
        assert not [value for value in values if value in run.output]
        assert not [line for line in key_lines if line in run.output]
        assert "PRIVATE KEY" not in run.output


def _lookup_play(tmp_path: Path, name: str, expected: str) -> Path:
    path = tmp_path / "lookup.yml"
    path.write_text(yaml.safe_dump([{
        "name": "The lookup", "hosts": "zk1", "gather_facts": False, "tasks": [{
            "name": "Compare the secret with what it must be",
            "ansible.builtin.assert": {
                "that": [f"lookup('evilnet_secret', '{name}') == {expected}"], "quiet": True},
            "no_log": True}]}]))
    return path


def test_the_lookup_generates_a_file_once_and_reads_vault_variables(tmp_path: Path) -> None:
    inventory = write_inventory(tmp_path)
    secret_file = tmp_path / "state" / "secrets" / secrets.secret("spark_auth_secret").file
    playbook = _lookup_play(tmp_path, "spark_auth_secret",
                            f"lookup('ansible.builtin.file', '{secret_file}')")
    first = _run(playbook, inventory)
    value = secret_file.read_text().strip()
    assert len(value) == secrets.secret("spark_auth_secret").length
    assert secret_file.stat().st_mode & 0o777 == 0o600
    _run(playbook, inventory)
    assert secret_file.read_text().strip() == value
    assert value not in first.output

    vault = write_inventory(tmp_path / "vault", evilnet_secrets_source="vault",
                            evilnet_secrets_dir=None)
    given = "a-value-the-vault-holds"
    playbook = _lookup_play(tmp_path, "spark_auth_secret", f"'{given}'")
    _run(playbook, vault, "-e", f"vault_evilnet_spark_auth_secret={given}")
    assert not (tmp_path / "vault" / "state" / "secrets").exists()


def test_the_lookup_names_a_missing_vault_variable(tmp_path: Path) -> None:
    vault = write_inventory(tmp_path, evilnet_secrets_source="vault", evilnet_secrets_dir=None)
    play = tmp_path / "missing.yml"
    play.write_text(yaml.safe_dump([{
        "name": "The lookup", "hosts": "zk1", "gather_facts": False, "tasks": [{
            "name": "Read a secret the vault does not hold",
            "ansible.builtin.set_fact": {
                "probe": "{{ lookup('evilnet_secret', 'cassandra_reader_password') }}"}}]}]))
    run = run_playbook(play, vault, project_dir=REPO_ROOT, timeout=600)
    assert run.returncode != 0
    assert "vault_evilnet_cassandra_reader_password is not set" in run.output


def test_the_roles_validity_and_renewal_window_reach_the_controller_step(
        tmp_path: Path) -> None:
    inventory = write_inventory(tmp_path)
    _run("ansible/playbooks/pki.yml", inventory, "-e", "pki_certificate_days=800")

    def days_left() -> set[int]:
        status = evilnet(inventory, "pki", "status", "--format", "json")
        assert status.returncode == 0, status.stdout + status.stderr
        return {row["days_left"] for row in json.loads(status.stdout)["certificates"]}

    assert days_left() == {799}
    # 799 days left is within a window of 850: the next run re-issues every one.
    run = _run("ansible/playbooks/pki.yml", inventory, "-e", "pki_certificate_days=900",
               "-e", "pki_renew_within_days=850")
    assert all(counts["changed"] > 0 for counts in run.recap().values())
    assert days_left() == {899}
