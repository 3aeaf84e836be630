"""The producer config: what it accepts, and that a refusal names the bad key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from producer_helpers import RULES, TOKEN, write_config

from evilnet.contracts import ACCESS_LEVELS
from evilnet.producer.config import ConfigError, load_config

VALID = {
    "shard": "qc-01",
    "rules": RULES,
    "kafka_bootstrap_servers": "127.0.1.4:9092, 127.0.1.5:9092",
    "bearer_token_env": "EVILNET_TEST_X_TOKEN",
}


def test_a_minimal_config_gets_the_contract_topics_and_the_real_api(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path / "p.yaml", **VALID))

    assert config.kafka_bootstrap_servers == ["127.0.1.4:9092", "127.0.1.5:9092"]
    assert (config.tweets_topic, config.dead_letter_topic) == ("tweets", "tweets.dead-letter")
    assert config.x_api_base_url == "https://api.twitter.com"
    assert [rule.rule_tag.city for rule in config.rules] == [
        "Montréal", "Montréal", "St. John's", "Trois-Rivières"]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"shard": "bad shard!"}, "shard"),
        ({"rules": []}, "rules"),
        ({"rules": [{"value": "x", "tag": "city=Montréal"}]}, "rules.0.tag"),
        ({"rules": [{"value": "", "tag": "city=Montréal;topic=food"}]}, "rules.0.value"),
        ({"rules": [RULES[0], {**RULES[1], "value": RULES[0]["value"]}]}, "rules"),
        ({"rules": [{**RULES[0], "taag": "x"}]}, "rules.0.taag"),
        ({"kafka_bootstrap_servers": "kafka-without-port"}, "kafka_bootstrap_servers"),
        ({"metrics_port": 70000}, "metrics_port"),
        ({"reconnect_time_scale": 0}, "reconnect_time_scale"),
        ({"x_api_base_url": "ftp://example"}, "x_api_base_url"),
        ({"bearer_tokn_env": "X"}, "bearer_tokn_env"),
        ({"bearer_token_file": "/etc/token"}, "bearer_token_file"),  # two sources
        ({"bearer_token": TOKEN}, "bearer_token"),  # inline tokens are not a key at all
    ],
)
def test_a_bad_config_is_refused_naming_the_key(tmp_path: Path, change: dict, named: str) -> None:
    path = write_config(tmp_path / "p.yaml", **{**VALID, **change})

    with pytest.raises(ConfigError) as refusal:
        load_config(path)

    assert f"{named}:" in str(refusal.value)
    assert TOKEN not in str(refusal.value)


def test_rules_as_long_as_the_largest_access_level_allows_are_accepted(tmp_path: Path) -> None:
    longest = max(level.rule_max_length for level in ACCESS_LEVELS.values())
    tag = RULES[0]["tag"]
    config = load_config(write_config(tmp_path / "p.yaml", **{
        **VALID, "rules": [{"value": "x" * longest, "tag": tag}]}))
    assert len(config.rules[0].value) == longest

    with pytest.raises(ConfigError, match=r"rules\.0\.value:"):
        load_config(write_config(tmp_path / "p.yaml", **{
            **VALID, "rules": [{"value": "x" * (longest + 1), "tag": tag}]}))


def test_yaml_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("- just\n- a list\n")

    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)


def test_the_token_comes_from_the_named_variable(tmp_path: Path, token_env: str) -> None:
    config = load_config(write_config(tmp_path / "p.yaml", **VALID))

    assert config.read_bearer_token().get_secret_value() == TOKEN


def test_an_unset_token_variable_is_named_not_guessed(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVILNET_TEST_X_TOKEN", raising=False)
    config = load_config(write_config(tmp_path / "p.yaml", **VALID))

    with pytest.raises(ConfigError, match="bearer_token_env: environment variable "
                                          "EVILNET_TEST_X_TOKEN is not set"):
        config.read_bearer_token()


def _token_file_config(tmp_path: Path, mode: int):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    os.chmod(token_file, mode)
    keys = {key: value for key, value in VALID.items() if key != "bearer_token_env"}
    return load_config(write_config(tmp_path / "p.yaml", **keys, bearer_token_file=str(token_file)))


def test_a_0600_token_file_is_read(tmp_path: Path) -> None:
    assert _token_file_config(tmp_path, 0o600).read_bearer_token().get_secret_value() == TOKEN


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o666])
def test_a_token_file_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    config = _token_file_config(tmp_path, mode)

    with pytest.raises(ConfigError, match=f"bearer_token_file: .* has mode {mode:04o}"):
        config.read_bearer_token()


def test_the_token_never_shows_in_a_repr(tmp_path: Path, token_env: str) -> None:
    config = load_config(write_config(tmp_path / "p.yaml", **VALID))
    token = config.read_bearer_token()

    assert TOKEN not in repr(token) + str(token) + repr(config)
