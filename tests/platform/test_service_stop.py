"""`make down` stops a host's services before the next play starts (the service role's
stop_all under supervisord), run by ansible-playbook on a throwaway supervisord.

down.yml stops ZooKeeper after Kafka because a broker's controlled shutdown needs
it. That order only holds if stopping a host returns once its programs have exited:
supervisorctl's `shutdown` returns at once, and on 2026-12-01 a broker still shutting
down lost ZooKeeper under it and was killed 60 s later. The program here takes a few
seconds to exit after SIGTERM, as a broker does; no pipeline service is involved.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from evilnet.platform.playbook import run_playbook

REPO_ROOT = Path(__file__).resolve().parents[2]
SLOW_EXIT_S = 4

SLOW_TO_STOP = f"""
import pathlib, signal, sys, time
def stop(*_):
    time.sleep({SLOW_EXIT_S})
    pathlib.Path(sys.argv[1]).write_text("exited cleanly")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
while True:
    time.sleep(1)
"""


def _site(root: Path) -> tuple[Path, Path, Path]:
    script = root / "slow_to_stop.py"
    script.write_text(SLOW_TO_STOP)
    marker = root / "stopped"
    inventory = root / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"slowhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
        "evilnet_root": str(root / "host"), "evilnet_venv": str(Path(sys.executable).parent.parent),
        "evilnet_service_manager": "supervisor"}}}}))
    service = {"service_name": "slow-to-stop",
               "service_command": f"{sys.executable} {script} {marker}",
               "service_working_dir": str(root), "service_notify": ["Never notified"]}
    playbook = root / "play.yml"
    playbook.write_text(yaml.safe_dump([
        {"name": "A host with one service slow to stop", "hosts": "all", "gather_facts": False,
         "tasks": [
             {"name": "Run supervisord", "ansible.builtin.include_role": {
                 "name": "service", "tasks_from": "supervisord"}},
             {"name": "Define", "ansible.builtin.include_role": {
                 "name": "service", "tasks_from": "define"}, "vars": service},
             {"name": "Start", "ansible.builtin.include_role": {
                 "name": "service", "tasks_from": "start"}, "vars": service}],
         "handlers": [{"name": "Never notified", "ansible.builtin.debug": {"msg": "-"}}]},
        {"name": "Stop it as make down does", "hosts": "all", "gather_facts": False,
         "tasks": [{"name": "Stop", "ansible.builtin.include_role": {
             "name": "service", "tasks_from": "stop_all"}}]}]))
    return inventory, playbook, marker


def test_stopping_a_host_returns_only_once_its_services_have_exited(tmp_path: Path) -> None:
    inventory, playbook, marker = _site(tmp_path)
    run = run_playbook(playbook, inventory, project_dir=REPO_ROOT, timeout=300)
    assert run.returncode == 0, run.output[-3000:]
    # Checked the moment the play returns, as the next play of down.yml would start.
    assert marker.exists(), "the play returned while the service was still stopping"
    assert not (tmp_path / "host" / "supervisor" / "run" / "supervisord.pid").exists()
