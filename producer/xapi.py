"""The X API v2 filtered stream through tweepy: base URL seam, rules, reconnecting stream.

tweepy 4.17 hard-codes ``https://api.twitter.com`` in both the rules calls
(``BaseClient.request``) and the stream (``StreamingClient._connect``), but sends
every request through ``self.session``. :class:`BaseUrlSession` is that session,
sending what tweepy addresses to api.twitter.com to the configured base URL
instead (the local simulator, or X itself).

tweepy's own reconnect loop (``BaseStream._connect``) sleeps with ``time.sleep``
(so SIGTERM waits up to 320 s), detects stalls only by a fixed 21 s read timeout,
and retries a 401/403 forever. :class:`XStream` keeps tweepy's request building,
rules calls and parameter handling, and replaces only that loop with one that
follows :class:`~evilnet.producer.reconnect.ReconnectPolicy`, can be woken up,
and stops on an authentication error.

Today's API (see producer/README.md, "X API behaviour"): ``GET .../rules`` is
paginated and ``GET .../rules/counts`` reports the caps; tweepy 4.17 knows
neither, so they go through tweepy's own ``_make_request`` (same session, same
errors). A refused stream connection is told apart by its problem body: a usage
cap, a connection limit, a rate limit (its ``x-rate-limit-reset``), the rest.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
import tweepy
import urllib3
from pydantic import SecretStr

from evilnet.contracts import X_API_BASE_URL, RuleTag, TagError
from evilnet.producer.config import Rule
from evilnet.producer.metrics import ProducerMetrics
from evilnet.producer.reconnect import ReconnectCause, ReconnectPolicy
from evilnet.producer.routing import Line, split_lines

log = logging.getLogger(__name__)

# What the Spark job needs of a post (see evilnet.contracts.PostRecord) and what
# makes a post readable in a dead letter. Without these the API sends only id and text.
STREAM_PARAMETERS: dict[str, list[str]] = {
    "tweet_fields": ["created_at", "author_id", "lang", "referenced_tweets", "geo"],
    "expansions": ["author_id", "referenced_tweets.id", "geo.place_id"],
    "user_fields": ["username"],
    "place_fields": ["full_name", "country_code"],
}

CONNECT_TIMEOUT_SECONDS = 10
RULES_PATH = "/2/tweets/search/stream/rules"
RULES_COUNTS_PATH = "/2/tweets/search/stream/rules/counts"
# GET rules returns at most 1,000 rules a page; a POST adds or deletes at most as many
# (X's limit on ids per request), so larger changes go in batches.
RULES_PAGE_SIZE = 1000
RULES_BATCH_SIZE = 1000
# The API sends chunked transfer encoding, so a read returns as soon as one chunk
# (one post or keep-alive) arrives; a large read size costs no latency.
STREAM_READ_CHUNK_BYTES = 64 * 1024


class XApiAuthError(RuntimeError):
    """The X API refused the bearer token (HTTP 401 or 403): retrying cannot help."""


class UsageCapExceeded(RuntimeError):
    """The X API refused for a usage cap (HTTP 429 UsageCapExceeded)."""

    def __init__(self, problem: dict[str, Any], resumes_at: datetime) -> None:
        self.period = str(problem.get("period") or "Monthly")
        self.scope = str(problem.get("scope") or "")
        self.resumes_at = resumes_at
        super().__init__(
            f"the X API refused for its {self.period.lower()} usage cap "
            f"({problem.get('detail') or 'UsageCapExceeded'}): not reconnecting until the "
            f"period resets at {resumes_at.isoformat()} or an operator sends SIGHUP")


def usage_period_end(period: str, now: datetime) -> datetime:
    """When a usage cap of ``period`` (``Daily`` or ``Monthly``) resets: the next UTC day
    or calendar month (X names no reset time; a billing cycle may start on another day,
    so an operator who knows better resumes the producer with SIGHUP)."""
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "Daily":
        return day + timedelta(days=1)
    first = day.replace(day=1)
    return (first + timedelta(days=32)).replace(day=1)


def problem_of(response: requests.Response) -> dict[str, Any]:
    """The problem object of an error response ({} when the body is not one)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


@dataclass(frozen=True)
class RuleCounts:
    """``GET .../rules/counts``: how many rules the app may hold and holds."""

    cap_per_client_app: int
    client_app_rules_count: int

    @classmethod
    def parse(cls, data: dict[str, Any]) -> RuleCounts:
        # The spec gives the caps as strings and the counts as integers.
        return cls(int(data["cap_per_client_app"]),
                   int(data["client_app_rules_count"]["rule_count"]))


class RuleReconcileError(RuntimeError):
    """The rules could not be reconciled: the API refused a change or was unreachable."""


class BaseUrlSession(requests.Session):
    """A session that sends what tweepy addresses to :data:`~evilnet.contracts.X_API_BASE_URL`
    (hard-coded in tweepy) to ``base_url``."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any):  # type: ignore[override]
        if isinstance(url, str) and url.startswith(X_API_BASE_URL + "/"):
            url = self.base_url + url[len(X_API_BASE_URL):]
        return super().request(method, url, *args, **kwargs)


def rules_client(base_url: str, token: SecretStr) -> tweepy.StreamingClient:
    """A tweepy client for the rules endpoints only."""
    client = tweepy.StreamingClient(token.get_secret_value())
    client.session = BaseUrlSession(base_url)
    return client


def _auth_error(status: int, token_source: str,
                problem: dict[str, Any] | None = None) -> XApiAuthError:
    # 403 client-not-enrolled: the app is not in a Project, or its access level has no
    # filtered stream; the problem's reason says which fix is needed.
    reason = (problem or {}).get("reason") or (problem or {}).get("title")
    return XApiAuthError(
        f"the X API refused the bearer token from {token_source} "
        f"(HTTP {status}){' ' + str(reason) if reason else ''}: fix the token or the "
        "app's access; not retrying"
    )


@dataclass(frozen=True)
class RuleChanges:
    added: tuple[Rule, ...]
    deleted: tuple[tweepy.StreamRule, ...]
    kept: int
    foreign: int  # rules whose tag does not follow the tag format: not ours, left alone


def _owned_tag(rule: tweepy.StreamRule) -> str | None:
    try:
        return RuleTag.parse(rule.tag).tag if rule.tag else None
    except TagError:
        return None


def fetch_all_rules(client: tweepy.StreamingClient) -> list[tweepy.StreamRule]:
    """Every rule of the app, page by page (``meta.next_token``)."""
    rules: list[tweepy.StreamRule] = []
    params: dict[str, Any] = {"max_results": RULES_PAGE_SIZE}
    while True:
        page = client._make_request("GET", RULES_PATH, params=params,
                                    endpoint_parameters=("max_results", "pagination_token"),
                                    data_type=tweepy.StreamRule)
        rules += page.data or []
        token = (page.meta or {}).get("next_token")
        if not token:
            return rules
        params = {"max_results": RULES_PAGE_SIZE, "pagination_token": token}


def rule_counts(client: tweepy.StreamingClient) -> RuleCounts:
    """The app's rule cap and rule count (``GET .../rules/counts``)."""
    response = client._make_request("GET", RULES_COUNTS_PATH)
    return RuleCounts.parse(response.data)


def _batches(items: Sequence[Any]) -> list[Sequence[Any]]:
    return [items[start:start + RULES_BATCH_SIZE]
            for start in range(0, len(items), RULES_BATCH_SIZE)]


def validate_rules(client: tweepy.StreamingClient, wanted: Sequence[Rule]) -> list[str]:
    """The API's objections to ``wanted`` (a ``dry_run=true`` add; nothing is changed).

    Rules the app holds already come back as DuplicateRule and are fine.
    """
    problems = []
    for batch in _batches(list(wanted)):
        answer = client.add_rules([tweepy.StreamRule(value=r.value, tag=r.tag) for r in batch],
                                  dry_run=True)
        problems += [f"{error.get('title', 'error')}: {error.get('value')!r}"
                     f"{': ' + '; '.join(error['details']) if error.get('details') else ''}"
                     for error in answer.errors or [] if error.get("title") != "DuplicateRule"]
    return problems


def reconcile_rules(
    client: tweepy.StreamingClient,
    wanted: Sequence[Rule],
    *,
    token_source: str,
    metrics: ProducerMetrics | None = None,
) -> RuleChanges:
    """Make the app's rules that we own exactly ``wanted``; a no-op needs one read only.

    A shard is one X app (the API delivers every match of an app's rules to each
    of its connections), so every rule whose tag follows the tag format is ours;
    other rules (set by hand, another tool) are left as they are. A rule whose
    value is wanted with another tag is deleted and added again: the API keys
    rules by value and would refuse the duplicate. Before adding, the app's rule
    count is checked against its cap (``rules/counts``): a change that cannot fit
    is refused whole, before any write.
    """
    try:
        existing = fetch_all_rules(client)
        wanted_pairs = {(rule.value, rule.tag) for rule in wanted}
        ours = [(rule, tag) for rule in existing if (tag := _owned_tag(rule)) is not None]
        stale = tuple(rule for rule, tag in ours if (rule.value, tag) not in wanted_pairs)
        present = {(rule.value, tag) for rule, tag in ours}
        missing = tuple(rule for rule in wanted if (rule.value, rule.tag) not in present)
        if missing:
            counts = rule_counts(client)
            after = counts.client_app_rules_count - len(stale) + len(missing)
            if after > counts.cap_per_client_app:
                raise RuleReconcileError(
                    f"the app would hold {after} rules, more than its cap of "
                    f"{counts.cap_per_client_app} (rules/counts): nothing changed")
        for batch in _batches(stale):
            _check(client.delete_rules([rule.id for rule in batch]), "delete")
        for batch in _batches(missing):
            additions = [tweepy.StreamRule(value=rule.value, tag=rule.tag) for rule in batch]
            _check(client.add_rules(additions), "add")
    except (tweepy.Unauthorized, tweepy.Forbidden) as error:
        raise _auth_error(error.response.status_code, token_source) from None
    except tweepy.HTTPException as error:
        raise RuleReconcileError(f"the X API refused a rules call: {error}") from None
    except requests.RequestException as error:
        raise RuleReconcileError(f"the X API could not be reached: {error}") from None
    if metrics is not None:
        metrics.rule_changes.labels("add").inc(len(missing))
        metrics.rule_changes.labels("delete").inc(len(stale))
    changes = RuleChanges(missing, stale, len(ours) - len(stale), len(existing) - len(ours))
    log.info(
        "rules reconciled",
        extra={"added": len(missing), "deleted": len(stale), "kept": changes.kept,
               "foreign": changes.foreign},
    )
    return changes


def _check(response: tweepy.Response, action: str) -> None:
    if response.errors:
        problems = "; ".join(
            f"{error.get('title', 'error')}: {error.get('value') or error.get('detail', '')}"
            for error in response.errors
        )
        raise RuleReconcileError(f"the X API refused to {action} rules: {problems}")


class XStream(tweepy.StreamingClient):
    """tweepy's StreamingClient with the reconnect loop of X's documented policy.

    ``on_line`` receives every non-empty line (a payload); keep-alives only feed
    the stall timer. Run it with ``filter(threaded=True, **STREAM_PARAMETERS)``;
    after the thread ends, :attr:`fatal_error` says why if it was not a
    :meth:`disconnect`.
    """

    def __init__(
        self,
        *,
        base_url: str,
        token: SecretStr,
        token_source: str,
        on_line: Callable[[Line], None],
        max_line_bytes: int,
        policy: ReconnectPolicy,
        metrics: ProducerMetrics,
        backfill_minutes: int = 0,
    ) -> None:
        super().__init__(token.get_secret_value(), chunk_size=STREAM_READ_CHUNK_BYTES)
        self.session = BaseUrlSession(base_url)
        self._token_source = token_source
        self._on_line = on_line
        self._max_line_bytes = max_line_bytes
        self.policy = policy
        self._metrics = metrics
        self._wake = threading.Event()
        self._response: requests.Response | None = None
        self.fatal_error: BaseException | None = None
        self.connections = 0
        # Asked for on every reconnect (Enterprise only; 0 = never): the posts of the
        # last minutes come again, and the job drops the duplicates by post id.
        self.backfill_minutes = backfill_minutes
        self.usage_capped: UsageCapExceeded | None = None
        self._resume = False

    def resume(self) -> None:
        """An operator's word (SIGHUP): end a usage-cap wait and try to connect now."""
        self._resume = True
        self._wake.set()

    def disconnect(self) -> None:
        """Stop: finish the line in hand, close the connection, skip any pending wait."""
        self.running = False
        self._wake.set()
        response = self._response
        if response is not None:
            _shut_down_socket(response)

    def _connect(self, method: str, endpoint: str, params: Any = None, **_: Any) -> None:
        self.running = True
        self.session.headers["User-Agent"] = self.user_agent
        self.session.headers["Authorization"] = f"Bearer {self.bearer_token}"
        url = f"{X_API_BASE_URL}/2/tweets/{endpoint}/stream"
        try:
            while self.running:
                attempt = dict(params or {})
                if self.connections and self.backfill_minutes:
                    attempt["backfill_minutes"] = self.backfill_minutes
                outcome = self._stream_once(method, url, attempt)
                if outcome is None or not self.running:
                    break
                cause, until = outcome if isinstance(outcome, tuple) else (outcome, None)
                self._metrics.reconnects.labels(cause.value).inc()
                wait = self.policy.next_wait(cause, until)
                log.warning("stream reconnecting", extra={"cause": cause.value, "wait_s": wait})
                self._wake.wait(wait)
                if self.running:
                    self._wake.clear()
                if self._resume:
                    self._resume = False
                    log.warning("stream resumed by the operator")
        except Exception as error:
            if self.running:
                self.fatal_error = error
                log.error("stream stopped", extra={"error": str(error)})
        finally:
            self.session.close()
            self.running = False

    def _stream_once(self, method: str, url: str, params: Any
                     ) -> ReconnectCause | tuple[ReconnectCause, float | None] | None:
        """One connection, read until it ends; the cause to reconnect (with the nominal
        seconds the API named, if it did), or None to stop."""
        connected = False
        try:
            with self.session.request(
                method, url, params=params, stream=True,
                timeout=(CONNECT_TIMEOUT_SECONDS, self.policy.stall_timeout),
            ) as response:
                if response.status_code != 200:
                    return self._refused(response)
                connected = True
                self._response = response
                self.connections += 1
                self._metrics.stream_connected.set(1)
                self._metrics.usage_capped.set(0)
                self.usage_capped = None
                log.info("stream connected", extra={"connection": self.connections,
                                                    "backfill_minutes":
                                                        params.get("backfill_minutes", 0)})
                delivered = False
                for line in split_lines(response.iter_content(self.chunk_size),
                                        self._max_line_bytes):
                    if not delivered:
                        # Only a stream that delivers resets the backoff: a server that
                        # accepts and hangs up at once must not be redialled in a tight loop.
                        self.policy.connected()
                        delivered = True
                    if line.size:
                        if b'"errors"' in line.data[:64]:
                            self._count_notice(line.data)
                        self._on_line(line)
                    if not self.running:
                        return None
                return ReconnectCause.DROPPED
        # requests' errors are OSErrors; urllib3's can escape a streamed read unwrapped.
        except (OSError, urllib3.exceptions.HTTPError) as error:
            if not self.running:
                return None
            log.warning("stream connection failed", extra={"error": str(error)})
            if _is_read_timeout(error):
                return ReconnectCause.STALL if connected else ReconnectCause.NETWORK
            return ReconnectCause.DROPPED if connected else ReconnectCause.NETWORK
        finally:
            self._response = None
            self._metrics.stream_connected.set(0)

    def _count_notice(self, data: bytes) -> None:
        """Count the API's in-stream notices by ``disconnect_type`` / ``connection_issue``
        (the server closes the stream after a disconnect notice; we reconnect at once)."""
        try:
            errors = json.loads(data).get("errors")
        except (ValueError, AttributeError):
            return  # not JSON: the router dead-letters it
        for error in errors if isinstance(errors, list) else []:
            if not isinstance(error, dict):
                continue
            if error.get("disconnect_type"):
                self._metrics.disconnects.labels(str(error["disconnect_type"])).inc()
                log.warning("stream disconnect notice", extra={
                    "disconnect_type": error["disconnect_type"], "detail": error.get("detail")})
            if error.get("connection_issue"):
                self._metrics.connection_issues.labels(str(error["connection_issue"])).inc()

    def _refused(self, response: requests.Response
                 ) -> ReconnectCause | tuple[ReconnectCause, float | None]:
        status = response.status_code
        problem = problem_of(response)
        log.error("stream refused", extra={"status": status, "body": response.text[:500]})
        if problem.get("connection_issue"):
            self._metrics.connection_issues.labels(str(problem["connection_issue"])).inc()
        if status in (401, 403):
            raise _auth_error(status, self._token_source, problem)
        if status not in (420, 429):
            return ReconnectCause.HTTP_ERROR
        if problem.get("title") == "UsageCapExceeded":
            now = datetime.now(UTC)
            capped = UsageCapExceeded(problem, usage_period_end(str(problem.get("period")), now))
            self.usage_capped = capped
            self._metrics.usage_capped.set(1)
            self._metrics.usage_cap_resume.set(capped.resumes_at.timestamp())
            log.error("stream stopped: usage cap", extra={
                "error": str(capped), "period": capped.period, "scope": capped.scope,
                "resumes_at": capped.resumes_at.isoformat()})
            return ReconnectCause.USAGE_CAPPED, (capped.resumes_at - now).total_seconds()
        if problem.get("connection_issue") == "TooManyConnections":
            return ReconnectCause.TOO_MANY_CONNECTIONS
        reset = response.headers.get("x-rate-limit-reset", "")
        until = float(reset) - time.time() if reset.isdigit() else None
        return ReconnectCause.RATE_LIMITED, until


def _is_read_timeout(error: BaseException) -> bool:
    # requests wraps urllib3's ReadTimeoutError in a ConnectionError mid-stream and
    # raises ReadTimeout before the headers; both mean "silent for too long".
    if isinstance(error, requests.ReadTimeout | urllib3.exceptions.ReadTimeoutError):
        return True
    return any(isinstance(arg, urllib3.exceptions.ReadTimeoutError) for arg in error.args)


def _shut_down_socket(response: requests.Response) -> None:
    """Wake the reading thread: a shut-down socket reads as end of stream."""
    connection = getattr(response.raw, "connection", None)
    sock = getattr(connection, "sock", None)
    if sock is None:
        return
    with contextlib.suppress(OSError):  # already closed: nothing to wake
        sock.shutdown(socket.SHUT_RDWR)
