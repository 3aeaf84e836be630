"""Who gets into Spark and Prometheus on a secured stack (issue 14), asked of the real
services with real clients: a Spark application submitted the way the stream job is
(spark-submit with the master host's SPARK_CONF_DIR) registers and runs code on the
workers, and one without the shared secret, or with a wrong one, never registers;
the REST submission server is closed; the master's UI answers only over HTTPS.
Prometheus refuses plaintext HTTP, a request without a password and one with a
wrong password, and answers the inventory's login over TLS.

The stack is the local one (inventories/local), or the inventory named by
$EVILNET_SECURITY_INVENTORY (a throwaway secured Spark and Prometheus, as the
branch's verification ran), whose hosts' roots are under $EVILNET_SECURITY_HOSTS
(default .run/hosts). Credentials come from the inventory's own files (its CA and
secrets directories), as `evilnet` reads them.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest
from stack_guard import ROLES

from evilnet.platform import health
from evilnet.platform.inventory import Inventory

pytestmark = pytest.mark.stack

REPO_ROOT = Path(__file__).resolve().parents[2]
INVENTORY = Path(os.environ.get("EVILNET_SECURITY_INVENTORY",
                                REPO_ROOT / "inventories" / "local"))
HOSTS_ROOT = Path(os.environ.get("EVILNET_SECURITY_HOSTS", REPO_ROOT / ".run" / "hosts"))
# A driver that cannot register gives up after three 20-second attempts: what it
# shows in its first attempts is enough.
REFUSED_FOR = 45
APP = """
from pyspark.sql import SparkSession
spark = SparkSession.builder.getOrCreate()
print("SUM", spark.sparkContext.parallelize(range(100), 2).map(lambda x: x * 2).sum())
spark.stop()
"""


@pytest.fixture(scope="module")
def inventory() -> Inventory:
    return Inventory.load(INVENTORY, roles=ROLES)


# --- Spark -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def spark(inventory: Inventory) -> dict[str, object]:
    if inventory.spark_ui_cafile() is None:
        pytest.skip(f"{INVENTORY} runs Spark unsecured (spark_security_enabled false)")
    master = inventory.groups["spark_master"][0]
    conf_dir = HOSTS_ROOT / master / "etc" / "spark"
    environment = {}
    for line in (conf_dir / "spark-env.sh").read_text().splitlines():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            environment[name] = shlex.split(value)[0]
    return {"conf_dir": conf_dir, "env": environment, "ui": inventory.spark_master_ui(),
            "cafile": inventory.spark_ui_cafile(), "address": inventory.address(master),
            "port": int(inventory.var(master, "spark_master_port", "spark"))}


def _applications(spark: dict[str, object]) -> set[str]:
    status = health.spark_master_status(spark["ui"], spark["cafile"])
    return {app["name"] for app in status.get("activeapps", []) + status.get("completedapps", [])}


def _submit(tmp_path: Path, spark: dict[str, object], name: str,
            properties: Path | None = None, timeout: float = 240) -> tuple[int | None, str]:
    """spark-submit of a small job as the stream job's service runs it (its
    environment, SPARK_CONF_DIR), or with ``properties`` instead of the host's
    spark-defaults.conf; its exit code (None: stopped at ``timeout``) and output."""
    app = tmp_path / "app.py"
    app.write_text(APP)
    command = [f"{spark['env']['SPARK_HOME']}/bin/spark-submit", "--name", name,
               "--conf", "spark.cores.max=1", "--conf", "spark.ui.enabled=false"]
    if properties is not None:
        command += ["--properties-file", str(properties)]
    process = subprocess.Popen(
        [*command, str(app)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
        env={**os.environ, **spark["env"], "SPARK_CONF_DIR": str(spark["conf_dir"])})
    try:
        output, _ = process.communicate(timeout=timeout)
        return process.returncode, output
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        return None, output


def _defaults_without_the_secret(spark: dict[str, object], tmp_path: Path,
                                 secret: str | None) -> Path:
    """The host's spark-defaults.conf with no secret (``secret`` None: authentication
    off) or a wrong one (0600, like the original)."""
    lines = []
    for line in (spark["conf_dir"] / "spark-defaults.conf").read_text().splitlines():
        key = line.split(None, 1)[0] if line.strip() else ""
        if key == "spark.authenticate.secret":
            if secret is not None:
                lines.append(f"spark.authenticate.secret {secret}")
        elif key in ("spark.authenticate", "spark.network.crypto.enabled") and secret is None:
            continue
        else:
            lines.append(line)
    properties = tmp_path / "spark-defaults.conf"
    properties.touch(mode=0o600)
    properties.write_text("\n".join(lines) + "\n")
    return properties


def test_an_application_with_the_secret_registers_and_runs(tmp_path: Path, spark) -> None:
    name = f"security-test-{uuid.uuid4().hex[:8]}"
    code, output = _submit(tmp_path, spark, name)
    assert code == 0, output[-3000:]
    # 2 * (0 + ... + 99), computed by an executor on a worker.
    assert "SUM 9900" in output
    assert name in _applications(spark)


@pytest.mark.parametrize("secret", [None, "not-the-secret-" + "x" * 49],
                         ids=["no secret", "wrong secret"])
def test_an_application_without_the_secret_never_registers(tmp_path: Path, spark,
                                                            secret: str | None) -> None:
    name = f"security-test-refused-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    code, output = _submit(tmp_path, spark, name,
                           _defaults_without_the_secret(spark, tmp_path, secret),
                           timeout=REFUSED_FOR)
    assert "SUM" not in output
    assert name not in _applications(spark)
    # It tried: the master's RPC port refused it, not a missing master.
    assert "Failed to connect to master" in output or "All masters are unresponsive" in output, \
        output[-3000:]
    assert code != 0 or time.monotonic() - started >= REFUSED_FOR


def test_the_rest_submission_server_is_closed(spark) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((spark["address"], 6066), timeout=5).close()


def test_the_master_ui_answers_over_https_only(spark) -> None:
    status = health.spark_master_status(spark["ui"], spark["cafile"])
    assert status["status"] == "ALIVE"
    # Its HTTP port only redirects there: no status over plain HTTP.
    https = urllib.parse.urlsplit(spark["ui"])
    plain = f"http://{https.hostname}:{https.port - 400}/json/"

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    with pytest.raises(urllib.error.HTTPError) as redirected:
        urllib.request.build_opener(NoRedirect).open(plain, timeout=5)
    assert redirected.value.code in (301, 302, 307, 308)
    assert redirected.value.headers["Location"].startswith(f"https://{https.hostname}:")
    # A client that does not trust the inventory's CA does not get in either.
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(f"{spark['ui']}/json/", timeout=5,
                               context=ssl.create_default_context())


# --- Prometheus ------------------------------------------------------------------


@pytest.fixture(scope="module")
def prometheus(inventory: Inventory) -> tuple[str, health.WebLogin]:
    host = inventory.groups["prometheus"][0]
    login = inventory.prometheus_login(host)
    if login is None:
        pytest.skip(f"{INVENTORY} runs Prometheus unsecured (prometheus_security_enabled false)")
    return inventory.prometheus_url(host), login


def _query(url: str, login: health.WebLogin) -> dict:
    with health.open_url(f"{url}/api/v1/query?query=up", login) as response:
        return json.load(response)


def test_prometheus_answers_the_inventorys_login_over_tls(prometheus) -> None:
    url, login = prometheus
    answer = _query(url, login)
    assert answer["status"] == "success"
    assert {series["metric"]["job"] for series in answer["data"]["result"]} >= {"prometheus"}
    assert health.prometheus(url, login).ok  # as `evilnet status` asks it


def test_prometheus_refuses_plaintext_http(prometheus) -> None:
    url, login = prometheus
    _query(url, login)  # it is up: the login gets in
    plain = url.replace("https://", "http://", 1)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{plain}/api/v1/query?query=up", timeout=5)
    # Go's TLS server answers a plaintext request with 400 and nothing else.
    assert refused.value.code == 400
    assert b"HTTPS" in refused.value.read()


@pytest.mark.parametrize("who", ["no password", "wrong password", "unknown user"])
def test_prometheus_refuses_a_wrong_login(prometheus, who: str) -> None:
    url, login = prometheus
    _query(url, login)  # the right login gets in
    wrong = {"no password": None,
             "wrong password": health.WebLogin(login.username, "not-" + "x" * 28, login.cafile),
             "unknown user": health.WebLogin("mallory", login.password, login.cafile)}[who]
    address = f"{url}/api/v1/query?query=up"
    with pytest.raises(urllib.error.HTTPError) as refused:
        if wrong is None:
            urllib.request.urlopen(address, timeout=5, context=login.context())
        else:
            _query(url, wrong)
    assert refused.value.code == 401
