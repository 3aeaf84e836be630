"""Real X API payloads (tests/producer/samples/, copied from public captures) through
the producer code that would meet them: the router, the rules calls, the stream's
refusal handling."""

from __future__ import annotations

import ast
import http.server
import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from producer_helpers import TOKEN
from pydantic import SecretStr

from evilnet.contracts import DeadLetterReason, RuleTag
from evilnet.producer.config import Rule
from evilnet.producer.metrics import CONNECTION_ISSUES, USAGE_CAPPED, ProducerMetrics
from evilnet.producer.reconnect import ReconnectCause, ReconnectPolicy
from evilnet.producer.routing import Line, Router
from evilnet.producer.xapi import (
    RuleReconcileError,
    XApiAuthError,
    XStream,
    fetch_all_rules,
    reconcile_rules,
    rules_client,
)

SAMPLES = Path(__file__).resolve().parent / "samples"
LINES = (SAMPLES / "stream-lines.jsonl").read_bytes().splitlines()
ERRORS = {entry["id"]: entry for entry in json.loads((SAMPLES / "errors.json").read_text())}
RULES_RESPONSES = {entry["id"]: entry
                   for entry in json.loads((SAMPLES / "rules-responses.json").read_text())}
OUR_TAG = RuleTag("Montréal", "hockey").tag

# Per line (1-based, samples/README.md of the collection): the post's id, created_at,
# author and whether it is a retweet, or why it cannot be a record whatever its tags.
VALID = {
    1: ("1377650090978992134", "2021-04-01T15:52:31Z", "4602771083", False),
    2: ("1377650093109743620", "2021-04-01T15:52:32Z", "3026521093", False),
    3: ("1377650277642338305", "2021-04-01T15:53:16Z", "238869624", False),
    4: ("1377650387579248643", "2021-04-01T15:53:42Z", "387869763", False),
    5: ("1377650459033280516", "2021-04-01T15:53:59Z", "4818117674", False),
    6: ("1377650500687044618", "2021-04-01T15:54:09Z", "1164149377532907520", False),
    7: ("1377650529766154240", "2021-04-01T15:54:16Z", "382117052", False),
    9: ("1620859659946164225", "2023-02-01T19:00:31Z", "2833017360", False),
    10: ("1620858830937812995", "2023-02-01T18:57:14Z", "2833017360", True),
    11: (None, "2022-06-08T02:18:12Z", "15899943", False),
    13: (None, "2024-05-09T06:43:27Z", "190740340", True),
    14: ("1293447197564915712", "2020-08-12T07:20:17Z", "1109632615202455552", False),
    16: ("1331268908330913795", "2020-11-24T16:10:16Z", "602075911", False),
    17: ("1331270047512268802", "2020-11-24T16:14:47Z", "780789351210856448", False),
}
# Lines the stream sent without the fields a record needs (default fields only, or
# no created_at requested), and the truncated line.
INVALID = {8: DeadLetterReason.INVALID_JSON, 12: DeadLetterReason.MISSING_FIELD,
           15: DeadLetterReason.MISSING_FIELD, 18: DeadLetterReason.MISSING_FIELD,
           19: DeadLetterReason.MISSING_FIELD}


def test_the_samples_are_the_collection_s_nineteen_lines() -> None:
    assert len(LINES) == 19 and set(VALID) | set(INVALID) == set(range(1, 20))


def _with_our_tags(raw: bytes) -> bytes:
    message = json.loads(raw)
    message["matching_rules"] = [{**rule, "tag": OUR_TAG} for rule in message["matching_rules"]]
    return json.dumps(message, ensure_ascii=False).encode()


def _route(raw: bytes):
    return Router(256 * 1024, source="x-stream").route(Line(raw, len(raw)))


@pytest.mark.parametrize("number", sorted(VALID))
def test_a_real_post_with_our_tags_becomes_the_right_record(number: int) -> None:
    post_id, created_at, author_id, is_retweet = VALID[number]

    routed = _route(_with_our_tags(LINES[number - 1]))

    assert routed.dead_letter is None
    (record,) = routed.records  # one city, however many of its rules matched (line 13: 2)
    if post_id is not None:
        assert record.id == post_id
    assert re.fullmatch(r"\d{1,19}", record.id)
    assert record.created_at == datetime.fromisoformat(created_at).astimezone(UTC)
    assert (record.author_id, record.is_retweet) == (author_id, is_retweet)
    assert (record.city, record.topics) == ("Montréal", ["hockey"])


@pytest.mark.parametrize("number", sorted(VALID))
def test_a_real_post_as_captured_has_foreign_tags_and_is_dead_lettered(number: int) -> None:
    # Their tags are someone else's: null (2020-2021), absent (Labs, line 14), free text.
    routed = _route(LINES[number - 1])

    assert routed.records == ()
    assert routed.dead_letter.reason is DeadLetterReason.UNKNOWN_TAG_FORMAT
    assert routed.dead_letter.payload.encode() == LINES[number - 1]


@pytest.mark.parametrize("number", sorted(INVALID))
@pytest.mark.parametrize("retagged", [False, True], ids=["as-captured", "our-tags"])
def test_a_real_line_that_cannot_be_a_record_is_dead_lettered_with_its_reason(
        number: int, retagged: bool) -> None:
    raw = LINES[number - 1]
    if retagged and number != 8:  # line 8 is cut: it has no tags to replace
        raw = _with_our_tags(raw)

    routed = _route(raw)

    assert routed.records == ()
    assert routed.dead_letter.reason is INVALID[number]
    assert routed.dead_letter.payload.encode() == raw


@pytest.mark.parametrize("entry", ["E-I2", "E-I3", "E-D1"])
def test_real_in_stream_disconnect_notices_are_notices_not_dead_letters(entry: str) -> None:
    text = ERRORS[entry]["body_text"]
    if entry == "E-I2":  # a fragment: its errors[] is complete, the rest is cut
        text = text.split(',\n  "__twarc"')[0] + "\n}"
    if entry == "E-I3":  # the SDK printed the errors[] element alone
        text = json.dumps({"errors": [json.loads(text)]})
    raw = json.dumps(json.loads(text)).encode()  # one line, as the stream sends it

    routed = _route(raw)

    assert routed.dead_letter is None and routed.records == ()
    assert routed.notice[0]["title"] == "operational-disconnect"


# --- the rules calls meet the real rules responses -----------------------------------

@contextmanager
def _serving(answer: Callable[[str, str], tuple[int, bytes]]) -> Iterator[str]:
    """A loopback HTTP server answering each request with ``answer(method, path)``."""
    class Answer(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status, body = answer(self.command, self.path.split("?")[0])
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _always(status: int, body: bytes):
    return _serving(lambda _method, _path: (status, body))


def _routes(bodies: dict[str, bytes]):
    return _serving(lambda method, path: (200, bodies[f"{method} {path}"]))


def _json_body(entry: dict) -> bytes:
    return json.dumps(entry["body"], ensure_ascii=False).encode()


@pytest.mark.parametrize("entry", ["R-U2", "R-A-get_rules"])
def test_real_get_rules_pages_are_read_whole(entry: str) -> None:
    sample = RULES_RESPONSES[entry]
    with _always(200, _json_body(sample)) as url:
        rules = fetch_all_rules(rules_client(url, SecretStr(TOKEN)))

    assert [(rule.id, rule.value) for rule in rules] == [
        (rule["id"], rule["value"]) for rule in sample["body"]["data"]]


@pytest.mark.parametrize(("entry", "refusal"), [
    ("R-U4", "DuplicateRule"), ("R-U5", "DuplicateRule"), ("R-U6", "UnprocessableEntity"),
    ("R-A1", "DuplicateRule")])
def test_real_add_answers_with_errors_stop_reconciliation_naming_them(
        entry: str, refusal: str) -> None:
    sample = RULES_RESPONSES[entry]
    # R-U4 ends with zsh's no-newline marker; R-U5 was wrapped by its author.
    body = sample["body_text"].rstrip("%").replace("\n", "").encode()
    json.loads(body)
    empty = b'{"meta":{"sent":"2022-04-26T10:58:29.668Z","result_count":0}}'
    counts = (b'{"data":{"cap_per_client_app":"1000","cap_per_project":"1000",'
              b'"project_rules_count":"0","client_app_rules_count":{"rule_count":0}}}')
    wanted = [Rule(value="from:twitterdev", tag=OUR_TAG)]

    with _routes({"GET /2/tweets/search/stream/rules": empty,
                  "GET /2/tweets/search/stream/rules/counts": counts,
                  "POST /2/tweets/search/stream/rules": body}) as url, \
            pytest.raises(RuleReconcileError, match=refusal):
        reconcile_rules(rules_client(url, SecretStr(TOKEN)), wanted, token_source="test")


@pytest.mark.parametrize("entry", ["R-U1", "R-A-post_rules", "R-U3", "R-A-delete_rules"])
def test_real_answers_without_errors_are_accepted(entry: str) -> None:
    sample = RULES_RESPONSES[entry]
    existing = b'{"data":[{"id":"1","value":"old","tag":"city=Laval;topic=snow"}],' \
               b'"meta":{"result_count":1}}'
    counts = (b'{"data":{"cap_per_client_app":"1000","cap_per_project":"1000",'
              b'"project_rules_count":"1","client_app_rules_count":{"rule_count":1}}}')
    with _routes({"GET /2/tweets/search/stream/rules": existing,
                  "GET /2/tweets/search/stream/rules/counts": counts,
                  "POST /2/tweets/search/stream/rules": _json_body(sample)}) as url:
        changes = reconcile_rules(rules_client(url, SecretStr(TOKEN)),
                                  [Rule(value="new", tag=OUR_TAG)], token_source="test")

    assert [rule.value for rule in changes.added] == ["new"]
    assert [rule.id for rule in changes.deleted] == ["1"]


def test_a_real_invalid_request_answer_is_a_reconcile_error() -> None:
    sample = RULES_RESPONSES["R-A-delete_error"]
    with _always(400, _json_body(sample)) as url, \
            pytest.raises(RuleReconcileError, match="refused a rules call"):
        reconcile_rules(rules_client(url, SecretStr(TOKEN)), [Rule(value="x", tag=OUR_TAG)],
                        token_source="test")


# --- the stream meets the real refusals -----------------------------------------------

def _error_body(entry: dict) -> bytes:
    """The JSON of an error entry: its body, or the object inside its log text."""
    if entry["body"] is not None:
        return json.dumps(entry["body"]).encode()
    text = entry["body_text"]
    if text.startswith("{'"):  # E-I9: a Python dict repr
        return json.dumps(ast.literal_eval(text)).encode()
    start = text.index('{"')
    end = text.index("}", start) + 1
    return text[start:end].encode()


def _refusal(entry_id: str, headers: dict[str, str] | None = None):
    entry = ERRORS[entry_id]
    response = requests.Response()
    response.status_code = entry["http_status"]
    response._content = _error_body(entry)
    response.headers.update(headers or {})
    metrics = ProducerMetrics("test")
    stream = XStream(base_url="http://127.0.0.1:9", token=SecretStr(TOKEN), token_source="test",
                     on_line=lambda line: None, max_line_bytes=1024,
                     policy=ReconnectPolicy(0.02), metrics=metrics)
    return stream._refused(response), metrics, stream


@pytest.mark.parametrize("entry", ["E-I1", "E-D2", "E-A1", "E-A2"])
def test_real_too_many_connections_answers_wait_for_the_old_connection(entry: str) -> None:
    outcome, metrics, _ = _refusal(entry)

    assert outcome is ReconnectCause.TOO_MANY_CONNECTIONS
    assert metrics.value(CONNECTION_ISSUES + "_total",
                         connection_issue="TooManyConnections") == 1


def test_the_real_usage_cap_answer_stops_until_the_month_ends() -> None:
    outcome, metrics, stream = _refusal("E-I8", {"x-rate-limit-limit": "40000",
                                                 "x-rate-limit-remaining": "39999"})

    cause, seconds = outcome
    now = datetime.now(UTC)
    next_month = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    assert cause is ReconnectCause.USAGE_CAPPED
    assert abs(seconds - (next_month - now).total_seconds()) < 5
    assert stream.usage_capped.period == "Monthly"
    assert metrics.value(USAGE_CAPPED) == 1


@pytest.mark.parametrize("entry", ["E-U1", "E-U2"])
def test_real_rate_limit_answers_wait_for_the_reset(entry: str) -> None:
    reset = int(datetime.now(UTC).timestamp()) + 300
    (cause, seconds), _, _ = _refusal(entry, {"x-rate-limit-reset": str(reset)})

    assert cause is ReconnectCause.RATE_LIMITED and 295 <= seconds <= 300


@pytest.mark.parametrize("entry", ["E-I10", "E-I11", "E-I9"])
def test_real_409_and_503_answers_back_off_as_http_errors(entry: str) -> None:
    outcome, metrics, _ = _refusal(entry)

    assert outcome is ReconnectCause.HTTP_ERROR
    if ERRORS[entry]["http_status"] == 409:
        assert metrics.value(CONNECTION_ISSUES + "_total",
                             connection_issue="RuleConfigurationIssue") == 1


@pytest.mark.parametrize(("entry", "reason"), [("E-I4", "Unauthorized"),
                                               ("E-I5", "client-not-enrolled"),
                                               ("E-I6", "client-not-enrolled")])
def test_real_401_and_403_answers_stop_the_stream_naming_the_reason(
        entry: str, reason: str) -> None:
    with pytest.raises(XApiAuthError, match=reason):
        _refusal(entry)
