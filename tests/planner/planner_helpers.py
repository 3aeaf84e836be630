"""Settings for planner tests, without an inventory."""

from __future__ import annotations

from evilnet.planner import App, Settings


def make_settings(apps: int = 4, *, level: str = "pro", max_rules: int | None = None,
                  hosts: int = 2, redundancy: int = 1) -> Settings:
    return Settings(
        inventory="tests",
        hosts={f"producer{i}": f"127.0.1.{20 + i}" for i in range(1, hosts + 1)},
        apps=[App(f"app-{i}", {"env": f"X_BEARER_TOKEN_APP_{i}"}, i - 1)
              for i in range(1, apps + 1)],
        kafka_bootstrap_servers="127.0.1.4:9092,127.0.1.5:9092",
        x_api_base_url="http://127.0.1.9:8080",
        access_level=level,
        max_rules_per_shard=max_rules,
        redundancy=redundancy,
    )
