"""Rendering: golden files, the producer's own config model, docker-compose, hostile input."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from planner_helpers import make_settings

from evilnet.cities import PlanInputError
from evilnet.planner import (
    COMPOSE_FILE,
    PRODUCER_CONFIG_FILE,
    PlanError,
    make_plan,
    render_plan,
    render_shard,
    write_plan,
)
from evilnet.producer.config import parse_config

GOLDEN = Path(__file__).parent / "golden"
DOCKER_COMPOSE = shutil.which("docker-compose")


def render_small_plan(out: Path) -> list[Path]:
    plan = make_plan(["montreal", "St Johns", "Trois Rivieres"], ["hockey", "ice hockey"],
                     make_settings(apps=3, max_rules=4))
    write_plan(plan, out)
    return render_plan(out)


def test_small_plan_matches_the_golden_files(tmp_path: Path) -> None:
    render_small_plan(tmp_path)
    produced = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    if os.environ.get("UPDATE_GOLDEN"):
        shutil.rmtree(GOLDEN, ignore_errors=True)
        shutil.copytree(tmp_path, GOLDEN)
    expected = sorted(p.relative_to(GOLDEN) for p in GOLDEN.rglob("*") if p.is_file())
    assert produced == expected
    for relative in produced:
        assert (tmp_path / relative).read_text() == (GOLDEN / relative).read_text(), relative


def test_every_rendered_config_validates_with_the_producer_model(tmp_path: Path) -> None:
    written = render_small_plan(tmp_path)
    configs = [p for p in written if p.name == PRODUCER_CONFIG_FILE]
    assert len(configs) == 3
    for path in configs:
        config = parse_config(yaml.safe_load(path.read_text()), origin=str(path))
        assert config.bearer_token_file == Path("bearer-token") and config.bearer_token_env is None
        assert config.x_api_base_url == "http://127.0.1.9:8080"
        assert config.kafka_bootstrap_servers == ["127.0.1.4:9092", "127.0.1.5:9092"]
        assert config.shard == path.parent.name


@pytest.mark.skipif(DOCKER_COMPOSE is None, reason="Debian's docker-compose is not installed")
def test_every_rendered_compose_file_passes_docker_compose_config(tmp_path: Path) -> None:
    written = render_small_plan(tmp_path)
    composes = [p for p in written if p.name == COMPOSE_FILE]
    assert composes
    for path in composes:
        result = subprocess.run([DOCKER_COMPOSE, "-f", str(path), "config"], cwd=path.parent,
                                capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
        service = yaml.safe_load(result.stdout)["services"][f"producer-{path.parent.name}"]
        assert service["network_mode"] == "host"
        assert service["command"] == ["evilnet", "produce", "--config", "producer.yml"]


HOSTILE = st.one_of(
    st.text(max_size=60),
    st.sampled_from([
        "{{ lookup('pipe', 'id') }}", "{% for x in y %}", "hockey\nshard: evil", "a: b",
        "- item", "!!python/object:os.system", "&anchor", "*alias", "$(reboot)", "`id`",
        "; rm -rf /", "hockey OR lang:fr", '"quoted"', "point_radius:[0 0 1km]", "#hashtag",
        "city=Toronto;topic=x", "Montréal\u2028evil", "\x00", "hockey\r\nx", "' or '1'='1",
    ]),
    st.builds(lambda a, b: a + b, st.sampled_from(["hockey", "Toronto"]), st.text(max_size=20)),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(city=HOSTILE, topic=HOSTILE)
def test_hostile_input_is_refused_or_reaches_files_only_escaped(city: str, topic: str) -> None:
    settings_ = make_settings(apps=2)
    try:
        plan = make_plan(["Toronto", city], ["transit", topic], settings_)
    except PlanInputError:
        return  # refused before anything was written, with a message naming it
    except PlanError:
        return
    document = plan.to_json()
    for shard in document["shards"]:
        files = render_shard(document, shard)
        loaded = yaml.safe_load(files[PRODUCER_CONFIG_FILE])
        # No injected key, no template syntax, values read back exactly as planned.
        assert set(loaded) == {"shard", "producer_id", "rules", "kafka_bootstrap_servers",
                               "bearer_token_file",
                               "x_api_base_url", "metrics_host", "metrics_port",
                               "reconnect_time_scale"}
        assert loaded["rules"] == shard["rules"]
        compose = yaml.safe_load(files[COMPOSE_FILE])
        assert list(compose["services"]) == [shard["service"]]
        for text in files.values():
            assert "{{" not in text and "{%" not in text
            assert "\u2028" not in text and "\x00" not in text
