"""tweepy's real code over real HTTP against the simulator: rules, stream, faults."""

from __future__ import annotations

import base64
import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests
import tweepy
from producer_helpers import RULES, TOKEN, Simulator, free_port, wait_until
from pydantic import SecretStr

from evilnet.contracts import ACCESS_LEVELS, DEFAULT_ACCESS_LEVEL
from evilnet.producer.config import Rule
from evilnet.producer.metrics import RECONNECTS, ProducerMetrics
from evilnet.producer.reconnect import ReconnectCause, ReconnectPolicy, Wait
from evilnet.producer.routing import Line, Router
from evilnet.producer.simulator import XApiSimulator
from evilnet.producer.xapi import (
    STREAM_PARAMETERS,
    RuleReconcileError,
    XApiAuthError,
    XStream,
    reconcile_rules,
    rules_client,
)

WANTED = [Rule(**rule) for rule in RULES]
SOURCE = "environment variable EVILNET_TEST_X_TOKEN"
TIME_SCALE = 0.02  # 5 s -> 0.1 s, 60 s -> 1.2 s, stall 20 s -> 0.4 s


def _client(simulator: Simulator, token: str = TOKEN) -> tweepy.StreamingClient:
    return rules_client(simulator.base_url, SecretStr(token))


def _rule_calls(simulator: Simulator) -> list[tuple[str, str | None]]:
    return [(call["method"], call.get("action")) for call in simulator.state()["rules_calls"]]


# --- rules --------------------------------------------------------------------------

def test_first_start_adds_the_rules_and_a_second_start_only_reads(simulator: Simulator) -> None:
    first = reconcile_rules(_client(simulator), WANTED, token_source=SOURCE)
    second = reconcile_rules(_client(simulator), WANTED, token_source=SOURCE)

    assert len(first.added) == len(WANTED) and not first.deleted
    assert (second.added, second.deleted, second.kept) == ((), (), len(WANTED))
    # The adding run checks the app's cap (rules/counts) first; the second only reads.
    assert _rule_calls(simulator) == [("GET", None), ("GET", "counts"), ("POST", "add"),
                                      ("GET", None)]
    registered = simulator.state()["rules"]["app-1"]
    assert {(rule["value"], rule["tag"]) for rule in registered} == {
        (rule.value, rule.tag) for rule in WANTED}


def test_only_our_stale_rules_are_deleted_and_foreign_rules_stay(simulator: Simulator) -> None:
    client = _client(simulator)
    client.add_rules([tweepy.StreamRule("set by hand", tag="someone else's"),
                      tweepy.StreamRule("no tag at all"),
                      tweepy.StreamRule("old query", tag="city=Laval;topic=snow"),
                      tweepy.StreamRule(WANTED[0].value, tag="city=Laval;topic=hockey")])

    changes = reconcile_rules(client, WANTED, token_source=SOURCE)

    assert sorted(rule.value for rule in changes.deleted) == sorted(
        ["old query", WANTED[0].value])  # a value wanted with another tag is re-added
    assert changes.foreign == 2
    registered = {(rule["value"], rule.get("tag")) for rule in simulator.state()["rules"]["app-1"]}
    assert registered == {("set by hand", "someone else's"), ("no tag at all", None)} | {
        (rule.value, rule.tag) for rule in WANTED}


def test_the_rules_endpoints_answer_like_the_api(simulator: Simulator) -> None:
    client = _client(simulator)
    dry = client.add_rules(tweepy.StreamRule("cats", tag="city=Laval;topic=cats"), dry_run=True)
    assert client.get_rules().data is None
    assert dry.meta["summary"] == {"created": 0, "not_created": 1, "valid": 1, "invalid": 0}

    too_long = "x" * (ACCESS_LEVELS[DEFAULT_ACCESS_LEVEL].rule_max_length + 1)
    added = client.add_rules([tweepy.StreamRule("cats", tag="city=Laval;topic=cats"),
                              tweepy.StreamRule(too_long)])
    assert added.meta["summary"] == {"created": 1, "not_created": 1, "valid": 1, "invalid": 1}
    assert added.errors[0]["title"] == "Invalid Rule"
    duplicate = client.add_rules(tweepy.StreamRule("cats"))
    assert duplicate.errors[0]["title"] == "DuplicateRule"
    assert duplicate.errors[0]["id"] == added.data[0].id

    deleted = client.delete_rules([added.data[0].id, "999"])
    assert deleted.meta["summary"] == {"deleted": 1, "not_deleted": 1}
    assert client.get_rules().meta["result_count"] == 0
    with pytest.raises(tweepy.BadRequest):
        client._make_request("POST", "/2/tweets/search/stream/rules", json={"nothing": 1})


@pytest.mark.parametrize("level", sorted(ACCESS_LEVELS))
def test_the_simulator_holds_rules_to_the_length_of_its_access_level(level: str) -> None:
    limit = ACCESS_LEVELS[level].rule_max_length
    simulator = XApiSimulator([TOKEN], access_level=level)
    simulator.serve("127.0.0.1", 0)
    try:
        answer = _client(Simulator(simulator)).add_rules(
            [tweepy.StreamRule("y" * limit), tweepy.StreamRule("z" * (limit + 1))], dry_run=True)
    finally:
        simulator.shutdown()
    assert answer.meta["summary"]["valid"] == 1 and answer.meta["summary"]["invalid"] == 1
    (refused,) = answer.errors
    assert refused["value"] == "z" * (limit + 1) and refused["title"] == "Invalid Rule"
    assert f"1 to {limit} characters" in refused["details"][0]


def test_a_refused_rule_stops_reconciliation_with_the_api_reason(simulator: Simulator) -> None:
    # Valid in a config (another access level allows it), too long for this app's level.
    length = ACCESS_LEVELS[DEFAULT_ACCESS_LEVEL].rule_max_length + 1
    too_long = Rule(value="y" * length, tag="city=Laval;topic=snow")

    with pytest.raises(RuleReconcileError, match="Invalid Rule"):
        reconcile_rules(_client(simulator), [too_long], token_source=SOURCE)


def test_an_unreachable_api_is_a_reconcile_error() -> None:
    closed_port = free_port()

    client = rules_client(f"http://127.0.0.1:{closed_port}", SecretStr(TOKEN))
    with pytest.raises(RuleReconcileError, match="could not be reached") as failure:
        reconcile_rules(client, WANTED, token_source=SOURCE)

    assert TOKEN not in str(failure.value)


def test_a_refused_token_is_a_clear_error_that_names_its_source_only(simulator: Simulator) -> None:
    with pytest.raises(XApiAuthError) as refusal:
        reconcile_rules(_client(simulator, "wrong-token-77"), WANTED, token_source=SOURCE)

    assert str(refusal.value).startswith(f"the X API refused the bearer token from {SOURCE} "
                                         "(HTTP 401)")
    assert "wrong-token-77" not in str(refusal.value)


# --- stream -------------------------------------------------------------------------

@contextmanager
def streaming(simulator: Simulator | None, *, base_url: str | None = None, token: str = TOKEN,
              max_line_bytes: int = 256 * 1024) -> Iterator[tuple[XStream, list[Line]]]:
    lines: list[Line] = []
    stream = XStream(
        base_url=base_url or simulator.base_url, token=SecretStr(token), token_source=SOURCE,
        on_line=lines.append, max_line_bytes=max_line_bytes,
        policy=ReconnectPolicy(TIME_SCALE), metrics=ProducerMetrics("test"),
    )
    thread = stream.filter(threaded=True, **STREAM_PARAMETERS)
    try:
        yield stream, lines
    finally:
        stream.disconnect()
        thread.join(10)
        assert not thread.is_alive(), "the stream did not stop on disconnect()"


def _drain(simulator: Simulator, lines: list[Line]) -> list[bytes]:
    """Stop making posts and wait until everything sent has been read."""
    simulator.generation(paused=True)
    sent = simulator.state()["posts_sent"]
    wait_until(lambda: sum(1 for line in lines if line.data.startswith(b'{"data"')) >= sent)
    return simulator.sent_payloads()


def _posts(lines: list[Line]) -> list[bytes]:
    return [line.data for line in lines if line.data.startswith(b'{"data"')]


def test_every_post_sent_is_read_with_the_fields_the_job_needs(simulator: Simulator) -> None:
    reconcile_rules(_client(simulator), WANTED, token_source=SOURCE)

    with streaming(simulator) as (_, lines):
        wait_until(lambda: len(lines) >= 200)
        sent = _drain(simulator, lines)

    assert _posts(lines) == sent
    router = Router(256 * 1024)
    routed = [router.route(Line(payload, len(payload))) for payload in sent]
    assert all(outcome.records and outcome.dead_letter is None for outcome in routed)
    cities = {record.city for outcome in routed for record in outcome.records}
    assert cities == {"Montréal", "St. John's", "Trois-Rivières"}
    first = json.loads(sent[0])
    assert {"created_at", "author_id", "lang"} <= first["data"].keys()
    assert "users" in first["includes"]


def test_without_requested_fields_the_simulator_sends_only_the_defaults(
        simulator: Simulator) -> None:
    reconcile_rules(_client(simulator), WANTED, token_source=SOURCE)

    with requests.get(f"{simulator.base_url}/2/tweets/search/stream", stream=True, timeout=5,
                      headers={"Authorization": f"Bearer {TOKEN}"}) as response:
        line = next(line for line in response.iter_lines() if line)

    post = json.loads(line)
    assert set(post["data"]) == {"id", "text", "edit_history_tweet_ids"}
    assert "includes" not in post
    assert post["matching_rules"][0]["tag"] in {rule.tag for rule in WANTED}


def test_rules_change_on_the_live_connection(simulator: Simulator) -> None:
    reconcile_rules(_client(simulator), WANTED[:1], token_source=SOURCE)

    with streaming(simulator) as (_, lines):
        wait_until(lambda: len(lines) >= 20)
        reconcile_rules(_client(simulator), WANTED[2:3], token_source=SOURCE)
        changed_at = len(simulator.sent_payloads())
        wait_until(lambda: len(lines) >= changed_at + 20)
        sent = _drain(simulator, lines)

    assert simulator.state()["connections_opened"] == 1
    tags_after = {rule["tag"] for payload in sent[changed_at + 1:]
                  for rule in json.loads(payload)["matching_rules"]}
    assert tags_after == {WANTED[2].tag}


def _faulted(simulator: Simulator, *faults: dict, reconnects: int,
             ) -> tuple[list[Wait], list[bytes], list[bytes], XStream]:
    """Stream, apply the faults, wait for ``reconnects`` connections more, drain."""
    reconcile_rules(_client(simulator), WANTED, token_source=SOURCE)
    with streaming(simulator) as (stream, lines):
        wait_until(lambda: len(_posts(lines)) >= 50)
        for fault in faults:
            simulator.fault(**fault)
        wait_until(lambda: stream.connections >= 1 + reconnects)
        reconnected_at = len(_posts(lines))
        wait_until(lambda: len(_posts(lines)) >= reconnected_at + 50)
        sent = _drain(simulator, lines)
    return stream.policy.history, _posts(lines), sent, stream


def test_a_dropped_connection_is_retried_at_once_and_loses_nothing(simulator: Simulator) -> None:
    waits, received, sent, stream = _faulted(simulator, {"kind": "drop"}, reconnects=1)

    assert waits == [Wait(ReconnectCause.DROPPED, 0.0)]
    assert received == sent
    assert stream._metrics.value(RECONNECTS + "_total", cause="dropped") == 1


def test_http_errors_back_off_exponentially_then_nothing_is_lost(simulator: Simulator) -> None:
    waits, received, sent, _ = _faulted(
        simulator, {"kind": "refuse", "status": 503, "count": 3}, {"kind": "drop"}, reconnects=1)

    assert waits == [Wait(ReconnectCause.DROPPED, 0.0)] + [
        Wait(ReconnectCause.HTTP_ERROR, seconds) for seconds in (5, 10, 20)]
    assert received == sent


def test_rate_limits_wait_until_the_reset_then_nothing_is_lost(simulator: Simulator) -> None:
    waits, received, sent, _ = _faulted(
        simulator, {"kind": "refuse", "status": 429, "count": 2, "reset_in": 30},
        {"kind": "drop"}, reconnects=1)

    assert waits[0] == Wait(ReconnectCause.DROPPED, 0.0)
    # x-rate-limit-reset is whole epoch seconds, 30 s ahead when the answer was made.
    assert [wait.cause for wait in waits[1:]] == [ReconnectCause.RATE_LIMITED] * 2
    assert all(28.5 <= wait.seconds <= 30 for wait in waits[1:])
    assert received == sent


def test_a_silent_stream_counts_as_stalled_and_is_reconnected(simulator: Simulator) -> None:
    waits, received, sent, _ = _faulted(simulator, {"kind": "stall"}, reconnects=1)

    assert waits == [Wait(ReconnectCause.STALL, 0.0)]
    assert received == sent


def test_a_refused_token_on_the_stream_stops_it_without_retrying(simulator: Simulator) -> None:
    reconcile_rules(_client(simulator), WANTED, token_source=SOURCE)
    with streaming(simulator) as (stream, _):
        wait_until(lambda: stream.connections == 1)
        simulator.fault(kind="refuse", status=401, count=5)
        simulator.fault(kind="drop")
        wait_until(lambda: not stream.running)

    assert isinstance(stream.fatal_error, XApiAuthError)
    assert "(HTTP 401)" in str(stream.fatal_error) and TOKEN not in str(stream.fatal_error)
    assert stream.policy.history == [Wait(ReconnectCause.DROPPED, 0.0)]
    assert simulator.state()["pending_refusals"] == [401] * 4  # one attempt, no retry


def test_an_unreachable_api_backs_off_linearly(simulator: Simulator) -> None:
    closed_port = free_port()

    with streaming(simulator, base_url=f"http://127.0.0.1:{closed_port}") as (stream, _):
        wait_until(lambda: len(stream.policy.history) >= 4)

    assert [wait.seconds for wait in stream.policy.history[:4]] == [0, 0.25, 0.5, 0.75]
    assert {wait.cause for wait in stream.policy.history} == {ReconnectCause.NETWORK}


def test_garbage_on_the_stream_is_handed_on_and_the_stream_goes_on(simulator: Simulator) -> None:
    reconcile_rules(_client(simulator), WANTED, token_source=SOURCE)
    garbage = [b"\xff\xfe", b'{"dat', b"[]", b"x" * 5000]

    with streaming(simulator, max_line_bytes=2048) as (stream, lines):
        wait_until(lambda: len(lines) >= 10)
        simulator.fault(kind="raw", lines_base64=[base64.b64encode(g).decode() for g in garbage])
        wait_until(lambda: any(line.cut for line in lines))
        sent = _drain(simulator, lines)

    assert stream.connections == 1
    odd = [line for line in lines if not line.data.startswith(b'{"data"')]
    assert [line.data for line in odd] == [b"\xff\xfe", b'{"dat', b"[]", b"x" * 2048]
    assert odd[-1].size == 5000
    assert _posts(lines) == sent


def test_a_server_that_accepts_and_hangs_up_at_once_is_not_redialled_in_a_loop() -> None:
    class HangUp(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"0\r\n\r\n")  # an empty stream, ended cleanly

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HangUp)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with streaming(None, base_url=f"http://127.0.0.1:{server.server_address[1]}") as (
                stream, _):
            wait_until(lambda: len(stream.policy.history) >= 4)
    finally:
        server.shutdown()

    assert [wait.seconds for wait in stream.policy.history[:4]] == [0, 0.25, 0.5, 0.75]
    assert {wait.cause for wait in stream.policy.history} == {ReconnectCause.DROPPED}
