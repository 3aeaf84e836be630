"""The commands as an operator runs them (processes, signals, exit codes)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import requests
from producer_helpers import RULES, TOKEN, write_config

EVILNET = [sys.executable, "-c", "from evilnet.cli import main; main()"]


def test_simulate_x_api_serves_until_sigterm(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    simulator = subprocess.Popen(
        [*EVILNET, "simulate-x-api", "--port", "0", "--token-file", str(token_file),
         "--token-env", "UNSET_VARIABLE_FOR_THIS_TEST"],
        stderr=subprocess.PIPE, text=True)
    try:
        announced = ""
        while "X API simulator on" not in announced:
            announced = simulator.stderr.readline()
            assert announced, "the simulator exited before listening"
        base_url = re.search(r"(http://\S+)", announced)[1]

        unauthorized = requests.get(f"{base_url}/2/tweets/search/stream/rules", timeout=5)
        authorized = requests.get(f"{base_url}/2/tweets/search/stream/rules", timeout=5,
                                  headers={"Authorization": f"Bearer {TOKEN}"})
        assert (unauthorized.status_code, authorized.status_code) == (401, 200)
        assert authorized.json()["meta"]["result_count"] == 0
    finally:
        simulator.send_signal(signal.SIGTERM)
        simulator.communicate(timeout=20)
    assert simulator.returncode == 0


def test_simulate_x_api_refuses_a_token_file_others_can_read(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o644)

    result = subprocess.run([*EVILNET, "simulate-x-api", "--token-file", str(token_file)],
                            capture_output=True, text=True, timeout=30)

    assert result.returncode == 2
    assert "readable by its owner only" in result.stderr
    assert TOKEN not in result.stderr + result.stdout


def test_produce_refuses_a_bad_config_naming_the_key_with_status_2(tmp_path: Path) -> None:
    config = write_config(tmp_path / "p.yaml", shard="s1", rules=RULES,
                          kafka_bootstrap_servers="127.0.0.1:9", bearer_token_env="T",
                          metrics_port="nine thousand")

    result = subprocess.run([*EVILNET, "produce", "--config", str(config)], capture_output=True,
                            text=True, timeout=30, env={**os.environ, "T": TOKEN})

    assert result.returncode == 2
    assert "metrics_port: Input should be a valid integer" in result.stderr
