"""Structured logs, and the bearer token kept out of them."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from producer_helpers import RULES, TOKEN, Simulator
from pydantic import SecretStr

from evilnet.producer import logs
from evilnet.producer.config import Rule
from evilnet.producer.xapi import reconcile_rules, rules_client


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    logs.configure("DEBUG", stream)
    yield stream
    root.handlers[:], level = saved
    root.setLevel(level)


def test_every_line_is_one_json_object_with_the_extra_fields(captured: io.StringIO) -> None:
    logging.getLogger("evilnet.test").warning("stream reconnecting",
                                              extra={"cause": "stall", "wait_s": 0.25})

    entry = json.loads(captured.getvalue())
    assert entry["level"] == "warning" and entry["message"] == "stream reconnecting"
    assert (entry["cause"], entry["wait_s"]) == ("stall", 0.25)


def test_tweepy_debug_logs_of_a_real_request_never_show_the_token(
        captured: io.StringIO, simulator: Simulator) -> None:
    logs.redact(TOKEN)

    reconcile_rules(rules_client(simulator.base_url, SecretStr(TOKEN)),
                    [Rule(**RULES[0])], token_source="test")

    text = captured.getvalue()
    assert "Authorization" in text and "Bearer ***" in text  # tweepy did log the header
    assert TOKEN not in text


def test_a_secret_in_an_exception_is_masked(captured: io.StringIO) -> None:
    logs.redact("s3cr3t-value")
    try:
        raise RuntimeError("failed with header Bearer s3cr3t-value")
    except RuntimeError:
        logging.getLogger("evilnet.test").exception("boom")

    assert "s3cr3t-value" not in captured.getvalue()
    assert "Bearer ***" in json.loads(captured.getvalue())["exception"]
