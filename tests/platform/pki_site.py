"""A small site for the PKI and secrets tests: an inventory of three hosts whose CA and
secrets live beside it (as inventories/local keeps them under .run/), and `evilnet`
run on it as users run it. Its addresses are never contacted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

EVILNET = str(Path(sys.executable).with_name("evilnet"))
REPO_ROOT = Path(__file__).resolve().parents[2]
HOSTS = {"zookeeper": {"zk1": "127.0.2.1"}, "kafka": {"kafka1": "127.0.2.4"},
         "producers": {"producer1": "127.0.2.9"}}


def write_inventory(root: Path, hosts: dict[str, dict[str, str]] | None = None,
                    **settings: object) -> Path:
    """An inventory under ``root/inventory`` whose CA and secrets live in ``root/state``;
    its groups are ``hosts`` (group -> host -> address), by default :data:`HOSTS`."""
    inventory = root / "inventory"
    (inventory / "group_vars").mkdir(parents=True)
    children = {group: {"hosts": {host: {"ansible_host": address}
                                  for host, address in members.items()}}
                for group, members in (hosts or HOSTS).items()}
    (inventory / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": children}}))
    variables = {"ansible_connection": "local",
                 "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                 "evilnet_root": "{{ inventory_dir }}/../hosts/{{ inventory_hostname }}",
                 "evilnet_pki_dir": "../state/pki", "evilnet_secrets_source": "files",
                 "evilnet_secrets_dir": "../state/secrets", **settings}
    (inventory / "group_vars" / "all.yml").write_text(yaml.safe_dump(variables))
    (inventory / "group_vars" / "producers.yml").write_text(yaml.safe_dump({
        "planner_apps": [{"name": "app-1", "credential": {"file": "../state/x-api/app-1.token"}}],
        "planner_access_level": "basic", "x_api_simulator_enabled": True}))
    return inventory


def evilnet(inventory: Path, *arguments: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([EVILNET, "-i", str(inventory), "--roles",
                           str(REPO_ROOT / "ansible" / "roles"), *arguments],
                          input=stdin, capture_output=True, text=True, timeout=120,
                          check=False, cwd=inventory.parent)
