"""No secret where it must not be, on a secured stack after `make up` and a rollout
(issue 14's acceptance): every password, SCRAM secret, the Spark secret and every X
bearer token, as they are and encoded (base64 at any offset, URL-safe base64,
URL-encoded: evilnet.platform.secrets.encoded_forms), looked for in

- every file under each host's root, the controller's run directory (secrets, CA,
  plans), the plan the producer role rolls out, the run directory's plans
  (`.run/plan*`) and a Jenkins-archived plan (build/plan, $EVILNET_PLAN_DIR): a
  file may hold one only if it is private (0600 or stricter: the secret files, the
  keystores, and the 0600 configurations the roles render for their service, which
  is how the issue's "0600 secret files" reads on a host) and is no log; the plan
  may hold none whatever its mode (Jenkins archives it); compressed files are
  listed, not read (a value is not in them as bytes);
- every process's command line (`/proc/*/cmdline`, readable by every user);
- every process's environment (`/proc/*/environ`). The issue forbids an environment
  that `ps e` shows to other users, i.e. a process of another account; on the local
  stack every service runs as the user running the tests, who may read those
  environments anyway, so this asserts more: no secret in ANY process's
  environment, except the one Spark puts there by design: a worker hands each
  executor the application's secret in `_SPARK_AUTH_SECRET` (docs/security.md,
  "Spark"), readable by the service account and root only (`environ` is 0400).

Findings name the place and the secret's file, never its value. The test prints how
much it read, the private files that hold a secret (the control that the scan sees
the secrets where they are rendered), and what it found.

The stack is the local one (inventories/local), or the inventory named by
$EVILNET_SECURITY_INVENTORY (its hosts' roots under $EVILNET_SECURITY_HOSTS, if not
where the inventory puts them); it must run every service secured (else the test
skips) and keep its secrets in files (a Vault inventory's values are not on the
controller).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from security_probes import SECURITY_INVENTORY, secured_inventory, stack_roots

from evilnet.platform import secrets
from evilnet.platform.footprint import service_of
from evilnet.platform.inventory import Inventory

pytestmark = pytest.mark.stack

REPO_ROOT = Path(__file__).resolve().parents[2]
# Beside the controller's secrets and CA in its run directory, what holds no
# deployment's files: the bed's own state (another inventory) and the wheel cache.
NOT_THIS_INVENTORY = ("testbed", "uv-cache")
# The one environment variable that holds a secret by design, and whose it is.
SPARK_EXECUTOR_SECRET = ("_SPARK_AUTH_SECRET", "spark/auth.secret", "spark-worker")


@pytest.fixture(scope="module")
def inventory() -> Inventory:
    found = secured_inventory("the scan is the secured stack's acceptance")
    if found.setting("evilnet_secrets_source") != "files":
        pytest.skip(f"{SECURITY_INVENTORY} keeps its secrets in Vault: no values on the controller")
    return found


def bearer_tokens(inventory: Inventory) -> dict[str, bytes]:
    """The X apps' tokens the inventory names by file (planner_apps), wherever they are."""
    base = inventory.path if inventory.path.is_dir() else inventory.path.parent
    tokens = {}
    for app in inventory.planner_settings().apps:
        if "file" in app.credential:
            token = (base / app.credential["file"]).read_bytes().strip()
            if len(token) >= secrets.SHORTEST_VALUE:
                tokens[f"planner_apps {app.name} token"] = token
    return tokens


def plan_places(inventory: Inventory, run_dir: Path) -> list[Path]:
    """The plan the producer role rolls out, the plans in the controller's run
    directory (its default plan, `.run/plan-default`), and a plan Jenkins archived."""
    places = [inventory.locations().plan, *run_dir.glob("plan*"), REPO_ROOT / "build" / "plan"]
    if os.environ.get("EVILNET_PLAN_DIR"):
        places.append(Path(os.environ["EVILNET_PLAN_DIR"]))
    return [place for place in places if place is not None and place.exists()]


def test_no_secret_outside_the_private_files_in_any_log_command_line_or_environment(
        inventory: Inventory) -> None:
    secrets_dir = inventory.controller_dir("evilnet_secrets_dir")
    pki_dir = inventory.controller_dir("evilnet_pki_dir")
    values = {**secrets.known_values(secrets_dir)}
    known = set(values.values())
    values.update({name: token for name, token in bearer_tokens(inventory).items()
                   if token not in known})
    assert {item.file for item in secrets.SECRETS} <= set(values), \
        "the secrets directory lacks some of the catalog's secrets"
    forms = secrets.encoded_forms(values)

    roots = stack_roots(inventory)
    run_dir = secrets_dir.parent
    # The run directory's other entries (the hosts' roots are places of their own).
    controller = [entry for entry in sorted(run_dir.iterdir())
                  if entry.name not in NOT_THIS_INVENTORY and not any(
                      root.resolve().is_relative_to(entry.resolve()) for root in roots.values())]
    plans = plan_places(inventory, run_dir)
    places = [*roots.values(), *controller, secrets_dir, pki_dir, *plans]
    scan = secrets.scan_tree(places, forms, strict=tuple(plans))

    findings = list(scan.findings)
    allowed = []
    for found in secrets.scan_processes(forms):
        pid = int(found.where.split()[1])
        owner = service_of(pid, roots)
        variable, secret, service = SPARK_EXECUTOR_SECRET
        if (found.variable == variable and found.secret.startswith(secret)
                and owner is not None and owner[1] == service):
            allowed.append(found)
        else:
            findings.append(found)

    print(f"\n{len(values)} secrets ({len(forms)} forms) looked for in {scan.read} files "
          f"read under {len(places)} places ({len(scan.compressed)} compressed and "
          f"{len(scan.too_large)} over 64 MiB not read), and in every process.")
    print("over 64 MiB, not read:", ", ".join(str(path) for path in scan.too_large) or "none")
    print("private files holding a secret:", len(scan.private))
    for found in scan.private:
        print(f"  {found.where}: {found.secret}")
    for found in allowed:
        print(f"  by design: {found.where}: {found.secret}")
    report = "\n".join(f"{found.where}: {found.secret} ({found.why})" for found in findings)
    print(f"findings: {len(findings)}\n{report}")
    # The control: the scan sees the secrets where the roles render them (Kafka's
    # server.properties holds the brokers' JAAS line, 0600).
    assert any(found.secret == "kafka/broker.password" for found in scan.private), \
        "the scan found the brokers' password in no host's file: it sees nothing"
    assert not findings, f"{len(findings)} secret(s) where they must not be:\n{report}"
