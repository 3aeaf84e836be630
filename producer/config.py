"""The producer's configuration: one flat YAML file per shard.

The planner renders this file from a jinja2 template, so every key is at the top
level except the list of rules. Example, with every key::

    shard: qc-01                         # name of this shard (logs, metrics, Kafka client id)
    producer_id: qc-01@producer1         # this copy of the shard, written in every record
                                         # (PostRecord.producer); default: the shard's name
    rules:                               # the X API rules this shard owns
      - value: '(hockey OR #hockey) (place:"Montréal" OR Montréal)'
        tag: "city=Montréal;topic=hockey"
    kafka_bootstrap_servers: "127.0.1.4:9092,127.0.1.5:9092"   # or a YAML list
    tweets_topic: tweets                 # default: evilnet.contracts.TWEETS_TOPIC
    dead_letter_topic: tweets.dead-letter  # default: evilnet.contracts.DEAD_LETTER_TOPIC
    bearer_token_env: X_BEARER_TOKEN     # exactly one of bearer_token_env / bearer_token_file;
    # bearer_token_file: /etc/evilnet/x-bearer-token   # the file must be mode 0600 (or stricter)
    x_api_base_url: https://api.twitter.com  # default: evilnet.contracts.X_API_BASE_URL
    metrics_host: 0.0.0.0
    metrics_port: 9400                   # 0 = no metrics endpoint
    reconnect_time_scale: 1.0            # multiplies every reconnect wait and the 20 s stall
                                         # timeout (tests shorten them; see reconnect.py)
    max_payload_bytes: 262144            # a longer stream line is dead-lettered (cut)
    kafka_linger_ms: 20
    kafka_batch_size: 131072
    kafka_delivery_timeout_ms: 120000

The bearer token itself never appears in the file: it is read from the named
environment variable or file when the producer starts.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from evilnet.contracts import (
    ACCESS_LEVELS,
    DEAD_LETTER_TOPIC,
    DEFAULT_ACCESS_LEVEL,
    RULE_VALUE_MAX_LENGTH,
    TWEETS_TOPIC,
    X_API_BASE_URL,
    RuleTag,
    TagError,
)


class ConfigError(Exception):
    """A configuration that cannot be used; the message names the bad key."""


class Rule(BaseModel):
    """One filtered-stream rule: the query and the tag naming its city and topic."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Up to the longest any access level allows: the planner holds a plan to its own
    # level's limit, and the API refuses what is too long for the app.
    value: Annotated[str, Field(min_length=1, max_length=RULE_VALUE_MAX_LENGTH)]
    tag: str

    @field_validator("tag")
    @classmethod
    def _tag_follows_contract(cls, tag: str) -> str:
        try:
            return RuleTag.parse(tag).tag
        except TagError as error:
            raise ValueError(str(error)) from None

    @property
    def rule_tag(self) -> RuleTag:
        return RuleTag.parse(self.tag)


class ProducerConfig(BaseModel):
    """The validated contents of a producer config file (see the module doc)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    shard: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    # ``<shard>@<host>`` as the planner renders it (evilnet.contracts.producer_id): two
    # redundant copies of one shard tell their records apart by it.
    producer_id: Annotated[str | None,
                           Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}(@[A-Za-z0-9_.-]{1,253})?$")
                           ] = None
    rules: Annotated[list[Rule], Field(min_length=1)]
    kafka_bootstrap_servers: Annotated[list[str], Field(min_length=1)]
    tweets_topic: str = TWEETS_TOPIC
    dead_letter_topic: str = DEAD_LETTER_TOPIC
    bearer_token_env: str | None = None
    bearer_token_file: Path | None = None
    x_api_base_url: Annotated[str, Field(pattern=r"^https?://[^/\s]+(/[^\s]*)?$")] = (
        X_API_BASE_URL
    )
    metrics_host: str = "0.0.0.0"
    metrics_port: Annotated[int, Field(ge=0, le=65535)] = 9400
    # Secured metrics (the inventory's Prometheus is secured): the endpoint's HTTPS and
    # Prometheus's scrape login, one 0600 file the producer role writes
    # (evilnet.metrics_endpoint.EndpointSecurity); none: plain HTTP.
    metrics_login: Path | None = None
    reconnect_time_scale: Annotated[float, Field(gt=0, le=1)] = 1.0
    max_payload_bytes: Annotated[int, Field(ge=1024, le=900_000)] = 256 * 1024
    kafka_linger_ms: Annotated[int, Field(ge=0, le=10_000)] = 20
    kafka_batch_size: Annotated[int, Field(ge=1024)] = 128 * 1024
    kafka_delivery_timeout_ms: Annotated[int, Field(ge=1000)] = 120_000
    # A secured Kafka (SASL_SSL): the client properties file (0600) of the producers'
    # principal, which evilnet.kafka_clients reads; none for a plaintext cluster.
    kafka_client_config: Path | None = None
    # The app's X API access level (evilnet.contracts.ACCESS_LEVELS): whether a
    # reconnect asks for backfill, and the monthly post cap the 80 % alert meters.
    access_level: Literal[tuple(ACCESS_LEVELS)] = DEFAULT_ACCESS_LEVEL  # type: ignore[valid-type]

    @field_validator("kafka_bootstrap_servers", mode="before")
    @classmethod
    def _split_server_list(cls, servers: Any) -> Any:
        if isinstance(servers, str):
            return [server.strip() for server in servers.split(",") if server.strip()]
        return servers

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _servers_are_host_port(cls, servers: list[str]) -> list[str]:
        for server in servers:
            host, _, port = server.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"expected host:port, got {server!r}")
        return servers

    @field_validator("x_api_base_url")
    @classmethod
    def _without_trailing_slash(cls, url: str) -> str:
        return url.rstrip("/")

    @field_validator("rules")
    @classmethod
    def _rules_are_distinct(cls, rules: list[Rule]) -> list[Rule]:
        # The X API refuses a second rule with the same value (DuplicateRule).
        seen: set[str] = set()
        for rule in rules:
            if rule.value in seen:
                raise ValueError(f"two rules have the same value {rule.value!r}")
            seen.add(rule.value)
        return rules

    @model_validator(mode="after")
    def _one_token_source(self) -> ProducerConfig:
        if (self.bearer_token_env is None) == (self.bearer_token_file is None):
            raise ValueError(
                "bearer_token_env or bearer_token_file: set exactly one "
                "(the token itself is never written in the config)"
            )
        return self

    @property
    def producer(self) -> str:
        """The name this copy of the shard gives its records and its delivered-posts metric."""
        return self.producer_id or self.shard

    @property
    def bearer_token_source(self) -> str:
        """Where the token comes from, for messages (never the token itself)."""
        if self.bearer_token_env is not None:
            return f"environment variable {self.bearer_token_env}"
        return f"file {self.bearer_token_file}"

    def read_bearer_token(self) -> SecretStr:
        """The bearer token, from the environment variable or the 0600 file."""
        if self.bearer_token_env is not None:
            token = os.environ.get(self.bearer_token_env, "").strip()
            if not token:
                raise ConfigError(
                    f"bearer_token_env: environment variable {self.bearer_token_env} is not set"
                )
            return SecretStr(token)
        assert self.bearer_token_file is not None
        return SecretStr(read_secret_file(self.bearer_token_file, key="bearer_token_file"))


def read_secret_file(path: Path, *, key: str) -> str:
    """The stripped contents of ``path``, refused unless only its owner may read it."""
    try:
        mode = path.stat().st_mode
    except OSError as error:
        raise ConfigError(f"{key}: cannot read {path}: {error.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{key}: {path} has mode {stat.S_IMODE(mode):04o}; "
            "a secret file must be readable by its owner only (chmod 600)"
        )
    secret = path.read_text(encoding="utf-8").strip()
    if not secret:
        raise ConfigError(f"{key}: {path} is empty")
    return secret


def parse_config(document: Any, *, origin: str = "config") -> ProducerConfig:
    """Validate an already-loaded YAML document."""
    if not isinstance(document, dict):
        raise ConfigError(f"{origin}: expected a mapping of keys at the top level")
    try:
        return ProducerConfig.model_validate(document)
    except ValidationError as error:
        raise ConfigError(_describe(error, origin)) from None


def load_config(path: Path) -> ProducerConfig:
    """Read and validate the YAML file at ``path``."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"{path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    return parse_config(document, origin=str(path))


def _describe(error: ValidationError, origin: str) -> str:
    problems = []
    for problem in error.errors(include_url=False, include_input=False):
        key = ".".join(str(part) for part in problem["loc"])
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            message = "unknown key"
        # A check across keys (no location) names its keys in its message.
        problems.append(f"{key}: {message}" if key else message)
    return f"{origin}: " + "; ".join(problems)
