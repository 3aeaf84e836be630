"""Today's X API over real HTTP (the simulator, tweepy's real code): each 429 kind,
each error body and each disconnect type leads to the behaviour producer/README.md
documents ("X API behaviour"); reconciliation pages through thousands of rules."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
import tweepy
from producer_helpers import RULES, TOKEN, Simulator, wait_until
from pydantic import SecretStr

from evilnet.contracts import ACCESS_LEVELS, DEFAULT_ACCESS_LEVEL
from evilnet.producer.config import Rule
from evilnet.producer.metrics import (
    CONNECTION_ISSUES,
    DISCONNECTS,
    RECONNECTS,
    USAGE_CAPPED,
    ProducerMetrics,
)
from evilnet.producer.reconnect import ReconnectCause, ReconnectPolicy, Wait
from evilnet.producer.routing import Line
from evilnet.producer.simulator import DISCONNECT_TYPES, XApiSimulator
from evilnet.producer.xapi import (
    STREAM_PARAMETERS,
    RuleReconcileError,
    XApiAuthError,
    XStream,
    reconcile_rules,
    rules_client,
    validate_rules,
)

WANTED = [Rule(**rule) for rule in RULES]
TIME_SCALE = 0.02  # 20 s -> 0.4 s, 60 s -> 1.2 s
SAMPLES = Path(__file__).resolve().parent / "samples"
REAL_ERRORS = {entry["id"]: entry for entry in json.loads((SAMPLES / "errors.json").read_text())}


def _client(simulator: Simulator) -> tweepy.StreamingClient:
    return rules_client(simulator.base_url, SecretStr(TOKEN))


@contextmanager
def streaming(simulator: Simulator, backfill_minutes: int = 0
              ) -> Iterator[tuple[XStream, list[Line]]]:
    reconcile_rules(_client(simulator), WANTED, token_source="test")
    lines: list[Line] = []
    stream = XStream(base_url=simulator.base_url, token=SecretStr(TOKEN), token_source="test",
                     on_line=lines.append, max_line_bytes=256 * 1024,
                     policy=ReconnectPolicy(TIME_SCALE), metrics=ProducerMetrics("test"),
                     backfill_minutes=backfill_minutes)
    thread = stream.filter(threaded=True, **STREAM_PARAMETERS)
    try:
        wait_until(lambda: len(lines) >= 20, what="posts on the first connection")
        yield stream, lines
    finally:
        stream.disconnect()
        thread.join(10)
        assert not thread.is_alive()


def _after_refusals(simulator: Simulator, stream: XStream, refusal: dict, count: int) -> None:
    simulator.fault(kind="refuse", count=count, **refusal)
    simulator.fault(kind="drop")
    wait_until(lambda: stream.connections >= 2, timeout=30, what="the stream to reconnect")


# --- the three 429s ------------------------------------------------------------------

def test_too_many_connections_waits_for_the_old_connection_then_backs_off(
        simulator: Simulator) -> None:
    with streaming(simulator) as (stream, _):
        _after_refusals(simulator, stream, {"error": "too-many-connections"}, 3)

    assert stream.policy.history == [
        Wait(ReconnectCause.DROPPED, 0.0),
        Wait(ReconnectCause.TOO_MANY_CONNECTIONS, 20.0),  # the zombie connection expires
        Wait(ReconnectCause.TOO_MANY_CONNECTIONS, 60.0),  # then the 429 curve
        Wait(ReconnectCause.TOO_MANY_CONNECTIONS, 120.0)]
    assert stream._metrics.value(CONNECTION_ISSUES + "_total",
                                 connection_issue="TooManyConnections") == 3


def test_a_rate_limit_waits_until_its_reset(simulator: Simulator) -> None:
    with streaming(simulator) as (stream, _):
        _after_refusals(simulator, stream, {"error": "rate-limit", "reset_in": 45}, 1)

    dropped, limited = stream.policy.history
    assert dropped == Wait(ReconnectCause.DROPPED, 0.0)
    assert limited.cause is ReconnectCause.RATE_LIMITED and 43.5 <= limited.seconds <= 45


def test_a_usage_cap_stops_reconnecting_until_the_operator_resumes(
        simulator: Simulator) -> None:
    with streaming(simulator) as (stream, _):
        simulator.fault(kind="refuse", error="usage-cap-exceeded", count=1)
        opened = simulator.state()["connections_opened"]
        simulator.fault(kind="drop")
        wait_until(lambda: stream.usage_capped is not None, what="the usage cap")
        # Three seconds are 150 nominal seconds, far beyond every other backoff's first
        # steps: a capped producer makes no attempt at all.
        time.sleep(3)
        attempts_while_capped = simulator.state()["connections_opened"] - opened
        capped_gauge = stream._metrics.value(USAGE_CAPPED)
        stream.resume()  # what SIGHUP does in `evilnet produce`
        wait_until(lambda: stream.connections >= 2, what="the resumed stream")

    now = datetime.now(UTC)
    next_month = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    dropped, capped = stream.policy.history
    assert dropped == Wait(ReconnectCause.DROPPED, 0.0)
    assert capped.cause is ReconnectCause.USAGE_CAPPED
    assert abs(capped.seconds - (next_month - now).total_seconds()) < 30
    assert attempts_while_capped == 0 and capped_gauge == 1
    assert stream._metrics.value(USAGE_CAPPED) == 0  # connected again
    assert stream._metrics.value(RECONNECTS + "_total", cause="usage-capped") == 1


# --- the other error bodies ---------------------------------------------------------

@pytest.mark.parametrize("error", ["service-unavailable", "rule-configuration-issue"])
def test_503_and_409_back_off_as_http_errors(simulator: Simulator, error: str) -> None:
    with streaming(simulator) as (stream, _):
        _after_refusals(simulator, stream, {"error": error}, 2)

    assert stream.policy.history == [Wait(ReconnectCause.DROPPED, 0.0),
                                     Wait(ReconnectCause.HTTP_ERROR, 5.0),
                                     Wait(ReconnectCause.HTTP_ERROR, 10.0)]


@pytest.mark.parametrize(("error", "reason"), [("unauthorized", "Unauthorized"),
                                               ("client-not-enrolled", "client-not-enrolled")])
def test_401_and_403_stop_the_stream_at_once(simulator: Simulator, error: str,
                                             reason: str) -> None:
    with streaming(simulator) as (stream, _):
        simulator.fault(kind="refuse", error=error, count=3)
        simulator.fault(kind="drop")
        wait_until(lambda: not stream.running, what="the stream to stop")

    assert isinstance(stream.fatal_error, XApiAuthError) and reason in str(stream.fatal_error)
    assert simulator.state()["pending_errors"] == [error] * 2  # one attempt only


@pytest.mark.parametrize(("error", "sample"), [
    ("unauthorized", "E-I4"), ("client-not-enrolled", "E-I6"),
    ("rule-configuration-issue", "E-I10"), ("usage-cap-exceeded", "E-I8"),
    ("too-many-connections", "E-D2"), ("rate-limit", "E-U1")])
def test_the_simulator_answers_with_the_captured_bodies(simulator: Simulator, error: str,
                                                        sample: str) -> None:
    reconcile_rules(_client(simulator), WANTED, token_source="test")
    simulator.fault(kind="refuse", error=error)

    answer = requests.get(f"{simulator.base_url}/2/tweets/search/stream", timeout=5,
                          headers={"Authorization": f"Bearer {TOKEN}"})

    entry = REAL_ERRORS[sample]
    text = entry["body_text"]
    expected = entry["body"] if entry["body"] is not None else json.loads(
        text[text.index('{"'):text.index("}", text.index('{"')) + 1])
    assert answer.status_code == entry["http_status"]
    assert answer.json() == expected
    if error == "usage-cap-exceeded":  # the cap leaves the rate limit untouched (E-I8)
        assert answer.headers["x-rate-limit-remaining"] == "39999"


def test_a_second_connection_is_refused_as_x_refuses_it(simulator: Simulator) -> None:
    assert ACCESS_LEVELS[DEFAULT_ACCESS_LEVEL].stream_connections == 1
    with streaming(simulator) as (stream, _):
        second = requests.get(f"{simulator.base_url}/2/tweets/search/stream", timeout=5,
                              headers={"Authorization": f"Bearer {TOKEN}"})
        assert stream.connections == 1

    assert second.status_code == 429
    assert second.json()["connection_issue"] == "TooManyConnections"


# --- in-stream disconnects ------------------------------------------------------------

@pytest.mark.parametrize("disconnect_type", DISCONNECT_TYPES)
def test_each_disconnect_type_is_counted_and_reconnected_at_once(
        simulator: Simulator, disconnect_type: str) -> None:
    with streaming(simulator) as (stream, lines):
        simulator.fault(kind="disconnect", disconnect_type=disconnect_type)
        wait_until(lambda: stream.connections >= 2, what="the reconnect")

    # At once after the notice; a redial that meets the server still closing the old
    # socket is a plain network retry (seen once in 26 for UpstreamUncleanDisconnect).
    first, *retries = stream.policy.history
    assert first == Wait(ReconnectCause.DROPPED, 0.0)
    assert all(wait.cause is ReconnectCause.NETWORK for wait in retries), retries
    assert stream._metrics.value(DISCONNECTS + "_total", disconnect_type=disconnect_type) == 1
    notice = next(json.loads(line.data) for line in lines if line.data.startswith(b'{"errors"'))
    assert notice["errors"][0]["disconnect_type"] == disconnect_type


# --- backfill --------------------------------------------------------------------------

def test_a_reconnect_asks_for_the_backfill_the_level_allows(simulator: Simulator) -> None:
    seen: list[str] = []
    original = simulator.api.open_stream

    def recording(app, query):
        seen.append(query.get("backfill_minutes", ["-"])[0])
        return original(app, query)

    simulator.api.open_stream = recording
    with streaming(simulator, backfill_minutes=ACCESS_LEVELS["enterprise"].backfill_max_minutes
                   ) as (stream, _):
        simulator.fault(kind="drop")
        wait_until(lambda: stream.connections >= 2)

    assert seen[:2] == ["-", "5"]  # not on the first connection: there is no gap yet


# --- rules at scale ------------------------------------------------------------------

@pytest.fixture
def enterprise() -> Iterator[Simulator]:
    simulator = XApiSimulator([TOKEN], rate=50, keep_alive_seconds=0.05,
                              access_level="enterprise")
    simulator.serve("127.0.0.1", 0)
    yield Simulator(simulator)
    simulator.shutdown()


def _many(start: int, stop: int) -> list[Rule]:
    return [Rule(value=f"topic{n} Montréal", tag=f"city=Montréal;topic=topic{n}")
            for n in range(start, stop)]


def test_reconciling_2500_rules_over_three_pages_changes_exactly_the_difference(
        enterprise: Simulator) -> None:
    client = _client(enterprise)
    reconcile_rules(client, _many(0, 2500), token_source="test")
    calls_before = len(enterprise.state()["rules_calls"])
    wanted = _many(300, 2800)  # 300 stale, 300 missing, 2,200 kept

    changes = reconcile_rules(client, wanted, token_source="test")
    again = reconcile_rules(client, wanted, token_source="test")

    calls = enterprise.state()["rules_calls"][calls_before:]
    assert (len(changes.added), len(changes.deleted), changes.kept) == (300, 300, 2200)
    assert {rule.value for rule in changes.deleted} == {r.value for r in _many(0, 300)}
    assert [call.get("page") for call in calls if call["method"] == "GET"
            and "page" in call][:3] == [1, 2, 3]
    second_run = calls[-3:]
    assert [(call["method"], call.get("page")) for call in second_run] == [
        ("GET", 1), ("GET", 2), ("GET", 3)]  # three pages read, no write
    assert (again.added, again.deleted, again.kept) == ((), (), 2500)
    held = {rule["value"] for rule in enterprise.state()["rules"]["app-1"]}
    assert held == {rule.value for rule in wanted}


def test_rules_beyond_the_cap_are_refused_before_any_write(simulator: Simulator) -> None:
    cap = ACCESS_LEVELS[DEFAULT_ACCESS_LEVEL].rules_per_app
    client = _client(simulator)

    with pytest.raises(RuleReconcileError, match=f"more than its cap of {cap}"):
        reconcile_rules(client, _many(0, cap + 1), token_source="test")

    assert [call["method"] for call in simulator.state()["rules_calls"]] == ["GET", "GET"]


def test_delete_all_and_a_dry_run_validation(simulator: Simulator) -> None:
    client = _client(simulator)
    reconcile_rules(client, WANTED, token_source="test")
    too_long = Rule(value="y" * (ACCESS_LEVELS[DEFAULT_ACCESS_LEVEL].rule_max_length + 1),
                    tag="city=Laval;topic=snow")

    problems = validate_rules(client, [*WANTED, too_long])
    answer = client._make_request("POST", "/2/tweets/search/stream/rules",
                                  params={"delete_all": "true"})

    assert len(problems) == 1 and "Invalid Rule" in problems[0]  # held rules are fine
    assert answer.meta["summary"]["deleted"] == len(WANTED)
    assert simulator.state()["rules"]["app-1"] == []
