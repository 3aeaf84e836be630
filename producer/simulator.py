"""A local X API v2 filtered stream: a real HTTP server for the producer to talk to.

What it implements, as the API does:

* bearer authentication; each accepted token is one app with its own rules
  (the API keeps rules per app);
* ``GET /2/tweets/search/stream/rules`` (optionally ``?ids=``) and
  ``POST /2/tweets/search/stream/rules`` with ``{"add": [...]}`` or
  ``{"delete": {"ids": [...]}}``, ``?dry_run=true``, ``meta.summary`` and the
  ``errors`` of refused rules (DuplicateRule, invalid rules, unknown ids), with
  the rule length and rule count of one access level (``access_level``: the
  planner's default level unless told, ``evilnet.contracts.ACCESS_LEVELS``);
* ``GET /2/tweets/search/stream``: HTTP/1.1 chunked JSON lines, one post per
  chunk, a ``\\r\\n`` keep-alive when nothing was sent for a while, posts made by
  :class:`~evilnet.producer.generator.PostGenerator` for the app's rules, with
  ``matching_rules`` naming the rules' ids and tags, and only the fields and
  expansions the client asked for (``tweet.fields``, ``expansions``, ...).

Real faults, with the bodies and headers X sends (:data:`X_ERRORS`, copied from
captured responses, see ``tests/producer/samples/errors.json``): a stream
connection of an app with no rules gets 409 RuleConfigurationIssue; one more
connection than the access level allows (``stream_connections``) gets 429
TooManyConnections, unless the peer of an open one has hung up; an unknown
token gets 401. ``GET .../rules`` pages (``max_results`` 1-1000,
``pagination_token``, ``meta.next_token``); ``POST .../rules?delete_all=true``
deletes every rule; ``GET .../rules/counts`` reports the caps and the rules in
use. Where it still differs from X: rule values are not interpreted (posts are
made from the tags), and no usage cap is counted (inject it).

Test and operator endpoints (no authentication, loopback use only):

* ``POST /_sim/faults`` with ``{"kind": "drop"}`` (close open streams
  mid-stream), ``{"kind": "stall", "seconds": S}`` (open streams go silent: no
  data, no keep-alive; without ``seconds`` until the client hangs up), or
  ``{"kind": "refuse", "status": 429|503|401|403|409|500, "count": N}`` or
  ``{"kind": "refuse", "error": NAME, "count": N, "reset_in": S}`` (answer the
  next N stream connections with that error: a name of :data:`X_ERRORS`, e.g.
  ``usage-cap-exceeded``, ``too-many-connections``, ``rate-limit``; a status
  alone picks :data:`ERROR_FOR_STATUS`; ``x-rate-limit-reset`` is S seconds
  ahead), or ``{"kind": "disconnect", "disconnect_type": T}`` (open streams get
  X's in-stream error object with that ``disconnect_type``, then the server
  closes them), or ``{"kind": "raw", "lines_base64": [...]}`` (write these
  bytes, one line each, on the open streams: garbage as a broken API or proxy
  would send; not counted as posts);
* ``POST /_sim/generation`` with any of ``{"paused": bool, "rate": posts_per_s,
  "max_posts": N}``;
* ``GET /_sim/state``: counters, rules per app, the log of rules calls;
* ``GET /_sim/sent?after=N``: the posts written to clients, in order, exactly as
  sent, each with the connection number it went out on (the last
  ``sent_log_size`` are kept);
* ``POST /_sim/connections`` with ``{"connection": N, "drop_fraction": F, "seed": S,
  "stall_seconds": T}`` (any of the last three): faults of one stream connection,
  numbered in the order connections open (``GET /_sim/state`` lists the open ones;
  a number not opened yet takes effect when it opens). That connection leaves out
  the fraction F of its posts, chosen by a random generator seeded with S, and/or
  goes silent for T seconds, then sends what it held back (late, as a congested
  route delivers). ``GET /_sim/connections`` reports each connection's posts sent,
  dropped and held; ``/_sim/sent`` is the truth of what went out on which.

Redundant connections: an app may hold as many stream connections at once as its
access level allows (``stream_connections``, 2 on Enterprise). Every open
connection of an app receives every post made for its rules, as X delivers to
redundant connections, so two producers of one shard see the same posts, less
what each connection's faults take away.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import random
import re
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from evilnet.contracts import (
    ACCESS_LEVELS,
    DEFAULT_ACCESS_LEVEL,
    X_API_BASE_URL,
    RuleTag,
    TagError,
)
from evilnet.producer.generator import MatchableRule, PostGenerator, snowflake, x_timestamp

log = logging.getLogger(__name__)

RULES_PATH = "/2/tweets/search/stream/rules"
RULES_COUNTS_PATH = "/2/tweets/search/stream/rules/counts"
RULES_PAGE_MAX = 1000  # max_results of GET rules: 1-1000, default 1000
STREAM_PATH = "/2/tweets/search/stream"
DEFAULT_TWEET_FIELDS = frozenset({"id", "text", "edit_history_tweet_ids"})
DEFAULT_USER_FIELDS = frozenset({"id", "name", "username"})
DEFAULT_PLACE_FIELDS = frozenset({"id", "full_name"})
PROBLEMS = f"{X_API_BASE_URL}/2/problems/"


@dataclass
class _StreamConnection:
    number: int
    app: str
    tweet_fields: frozenset[str]
    user_fields: frozenset[str]
    place_fields: frozenset[str]
    expansions: frozenset[str]
    closed: bool = False
    drop: bool = False
    stall_until: float = 0.0
    raw_lines: deque[bytes] = field(default_factory=deque)
    # Posts made for the app and not yet written to this connection (it is stalled, or
    # its feeder has not come round yet), and this connection's own faults.
    outbox: deque[bytes] = field(default_factory=deque)
    faults: _ConnectionFaults | None = None
    posts_sent: int = 0


@dataclass
class _ConnectionFaults:
    """What one connection does wrong: drop a seeded fraction of posts, stall a while."""

    drop_fraction: float = 0.0
    seed: int = 0
    stall_seconds: float = 0.0
    dropped: int = 0
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.drop_fraction <= 1.0:
            raise ValueError("drop_fraction must be between 0 and 1")
        if self.stall_seconds < 0:
            raise ValueError("stall_seconds must not be negative")
        self.rng = random.Random(self.seed)

    def drops_next(self) -> bool:
        dropped = self.drop_fraction > 0 and self.rng.random() < self.drop_fraction
        self.dropped += dropped
        return dropped


@dataclass
class _App:
    name: str
    generator: PostGenerator
    rules: dict[str, dict[str, str]] = field(default_factory=dict)  # id -> {id, value, tag}
    streams: list[_StreamConnection] = field(default_factory=list)  # oldest first
    next_post_at: float | None = None  # monotonic time of the app's next post

    @property
    def stream(self) -> _StreamConnection | None:
        """The newest open stream connection."""
        return next((s for s in reversed(self.streams) if not s.closed), None)


class XApiSimulator:
    """State and behaviour of the simulated API; :meth:`serve` puts it on a socket."""

    def __init__(
        self,
        tokens: Iterable[str],
        *,
        rate: float = 20.0,
        keep_alive_seconds: float = 5.0,
        seed: int = 0,
        max_posts: int | None = None,
        access_level: str = DEFAULT_ACCESS_LEVEL,
        sent_log_size: int = 100_000,
        refuse_extra_connections: bool = True,
    ) -> None:
        self._apps = {
            token: _App(f"app-{index}", PostGenerator([], seed=seed + index))
            for index, token in enumerate(dict.fromkeys(tokens), start=1)
        }
        if not self._apps:
            raise ValueError("the simulator needs at least one bearer token to accept")
        self.rate = rate
        self.keep_alive_seconds = keep_alive_seconds
        self.max_posts = max_posts
        # Each app holds the rules of one access level, as X holds them: the rule
        # length and rule count the planner planned for (evilnet.contracts.ACCESS_LEVELS).
        limits = ACCESS_LEVELS[access_level]
        self.rule_max_length = limits.rule_max_length
        self.max_rules = limits.rules_per_app
        # One more live stream connection than the level allows is refused with 429
        # TooManyConnections, as X refuses it (False: the newest connection wins).
        self.stream_connections = limits.stream_connections
        self.refuse_extra_connections = refuse_extra_connections
        self.max_stream_connections = limits.stream_connections
        self._connection_faults: dict[int, _ConnectionFaults] = {}
        self.paused = False
        self._lock = threading.Lock()
        started = datetime.now(UTC)
        self._next_post_id = snowflake(started)
        self._next_rule_id = snowflake(started, 1 << 21)
        self._posts_sent = 0
        self._posts_made = 0  # posts made for the apps (each sent on every open connection)
        self._connections_opened = 0
        self._refusals: deque[_Refusal] = deque()
        # Each app's open stream sockets, to tell a live connection from one whose
        # client hung up (the connection limit counts the live ones only).
        self._stream_sockets: dict[int, tuple[str, socket.socket]] = {}
        self._sent_log: deque[dict[str, Any]] = deque(maxlen=sent_log_size)
        self._rules_calls: list[dict[str, Any]] = []
        self.stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    # --- serving --------------------------------------------------------------------

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
        """Listen on ``host:port`` (0 = any free port) in a background thread."""
        simulator = self

        class Handler(_Handler):
            sim = simulator

        server = ThreadingHTTPServer((host, port), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, name="x-api-simulator", daemon=True).start()
        log.info("X API simulator listening", extra={"url": self.base_url})
        return server

    @property
    def base_url(self) -> str:
        assert self._server is not None, "serve() first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def shutdown(self) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # --- state for tests and operators ------------------------------------------------

    def app_for(self, token: str | None) -> _App | None:
        return self._apps.get(token) if token else None

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "posts_sent": self._posts_sent,
                "posts_made": self._posts_made,
                "connections_opened": self._connections_opened,
                "active_connections": sum(
                    1 for app in self._apps.values() for s in app.streams if not s.closed),
                "open_connections": [
                    {"connection": s.number, "app": app.name}
                    for app in self._apps.values() for s in app.streams if not s.closed],
                "paused": self.paused,
                "rate": self.rate,
                "max_posts": self.max_posts,
                "pending_refusals": [refusal.status for refusal in self._refusals],
                "pending_errors": [refusal.error for refusal in self._refusals],
                "rules": {app.name: sorted(app.rules.values(), key=lambda rule: rule["id"])
                          for app in self._apps.values()},
                "rules_calls": list(self._rules_calls),
            }

    def sent(self, after: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            return [entry for entry in self._sent_log if entry["seq"] > after]

    def inject(self, fault: dict[str, Any]) -> None:
        """Apply a fault (see the module doc); raises ValueError for a bad one."""
        kind = fault.get("kind")
        with self._lock:
            streams = [stream for app in self._apps.values() for stream in app.streams
                       if not stream.closed]
            if kind == "drop":
                for stream in streams:
                    stream.drop = True
            elif kind == "stall":
                seconds = float(fault.get("seconds", 1e9))
                for stream in streams:
                    stream.stall_until = time.monotonic() + seconds
            elif kind == "raw":
                lines = [base64.b64decode(line, validate=True) for line in fault["lines_base64"]]
                for stream in streams:
                    stream.raw_lines.extend(lines)
            elif kind == "refuse":
                refusal = _Refusal.of(fault)
                self._refusals.extend([refusal] * int(fault.get("count", 1)))
            elif kind == "disconnect":
                line = disconnect_line(str(fault.get("disconnect_type", "OperationalDisconnect")))
                for stream in streams:
                    stream.raw_lines.extend([line, _CLOSE_STREAM])
            else:
                raise ValueError("kind must be 'drop', 'stall', 'refuse', 'disconnect' or 'raw'")
        log.info("fault injected", extra={"fault": fault})

    def configure_generation(self, settings: dict[str, Any]) -> None:
        with self._lock:
            if "paused" in settings:
                self.paused = bool(settings["paused"])
            if "rate" in settings:
                if float(settings["rate"]) <= 0:
                    raise ValueError("rate must be positive")
                self.rate = float(settings["rate"])
            if "max_posts" in settings:
                limit = settings["max_posts"]
                self.max_posts = None if limit is None else int(limit)

    # --- rules ------------------------------------------------------------------------

    def get_rules(self, app: _App, ids: list[str] | None, max_results: int = RULES_PAGE_MAX,
                  pagination_token: str | None = None) -> dict[str, Any]:
        """One page of the app's rules, in id order; ``meta.next_token`` while more follow.

        The token is the page's offset as 16 base32hex digits (X's tokens are 16
        base32hex characters); raises ValueError for a bad ``max_results`` or token.
        """
        if not 1 <= max_results <= RULES_PAGE_MAX:
            raise ValueError(f"max_results must be between 1 and {RULES_PAGE_MAX}")
        offset = 0
        if pagination_token is not None:
            if not re.fullmatch(r"[0-9A-V]{16}", pagination_token):
                raise ValueError("pagination_token must be 16 base32hex characters")
            offset = int(pagination_token, 32)
        with self._lock:
            self._rules_calls.append({"app": app.name, "method": "GET",
                                      "page": offset // max_results + 1})
            rules = [rule for rule_id, rule in sorted(app.rules.items())
                     if ids is None or rule_id in ids]
        page = rules[offset:offset + max_results]
        body: dict[str, Any] = {"meta": {"sent": _now(), "result_count": len(page)}}
        if page:
            body["data"] = page
        if offset + max_results < len(rules):
            body["meta"]["next_token"] = _base32hex(offset + max_results)
        return body

    def change_rules(self, app: _App, request: Any, dry_run: bool) -> tuple[int, dict[str, Any]]:
        if isinstance(request, dict) and "add" in request and isinstance(request["add"], list):
            with self._lock:
                self._rules_calls.append({"app": app.name, "method": "POST", "action": "add",
                                          "dry_run": dry_run})
                return self._add_rules(app, request["add"], dry_run)
        if (isinstance(request, dict) and isinstance(request.get("delete"), dict)
                and isinstance(request["delete"].get("ids"), list)):
            with self._lock:
                self._rules_calls.append({"app": app.name, "method": "POST",
                                          "action": "delete", "dry_run": dry_run})
                return self._delete_rules(app, [str(i) for i in request["delete"]["ids"]],
                                          dry_run)
        return 400, _invalid_request("the body must hold 'add' (a list) or 'delete.ids' (a list)")

    def _add_rules(self, app: _App, additions: list[Any], dry_run: bool) -> tuple[int, dict]:
        created: list[dict[str, str]] = []
        errors: list[dict[str, Any]] = []
        by_value = {rule["value"]: rule for rule in app.rules.values()}
        for addition in additions:
            value = addition.get("value") if isinstance(addition, dict) else None
            tag = addition.get("tag") if isinstance(addition, dict) else None
            if not isinstance(value, str) or not value.strip() or \
                    len(value) > self.rule_max_length:
                errors.append({"value": value, "title": "Invalid Rule",
                               "details": [f"Rule must be 1 to {self.rule_max_length} characters"],
                               "type": PROBLEMS + "invalid-rules"})
            elif value in by_value:
                errors.append({"value": value, "id": by_value[value]["id"],
                               "title": "DuplicateRule", "type": PROBLEMS + "duplicate-rules"})
            elif len(app.rules) + len(created) >= self.max_rules:
                errors.append({"value": value, "title": "RulesCapExceeded",
                               "type": PROBLEMS + "rule-cap"})
            else:
                rule = {"id": str(self._next_rule_id), "value": value}
                if isinstance(tag, str):
                    rule["tag"] = tag
                self._next_rule_id += 1
                created.append(rule)
                by_value[value] = rule
        if not dry_run:
            for rule in created:
                app.rules[rule["id"]] = rule
            self._regenerate(app)
        summary = {"created": 0 if dry_run else len(created),
                   "not_created": len(additions) - (0 if dry_run else len(created)),
                   "valid": len(created), "invalid": len(errors)}
        body: dict[str, Any] = {"meta": {"sent": _now(), "summary": summary}}
        if created:
            body["data"] = created
        if errors:
            body["errors"] = errors
        return (201 if created and not dry_run else 200), body

    def _delete_rules(self, app: _App, ids: list[str], dry_run: bool) -> tuple[int, dict]:
        known = [rule_id for rule_id in ids if rule_id in app.rules]
        unknown = [rule_id for rule_id in ids if rule_id not in app.rules]
        if not dry_run:
            for rule_id in known:
                del app.rules[rule_id]
            self._regenerate(app)
        body: dict[str, Any] = {"meta": {"sent": _now(), "summary": {
            "deleted": 0 if dry_run else len(known),
            "not_deleted": len(unknown) + (len(known) if dry_run else 0)}}}
        if unknown:
            body["errors"] = [{"value": rule_id, "title": "Invalid Request",
                               "detail": "Rule does not exist",
                               "type": PROBLEMS + "invalid-request"} for rule_id in unknown]
        return 200, body

    def _regenerate(self, app: _App) -> None:
        matchable = []
        for rule in app.rules.values():
            with contextlib.suppress(TagError):
                matchable.append(MatchableRule(rule["id"], RuleTag.parse(rule.get("tag", ""))))
        app.generator.set_rules(matchable)

    # --- stream ---------------------------------------------------------------------

    def take_refusal(self) -> _Refusal | None:
        with self._lock:
            return self._refusals.popleft() if self._refusals else None

    def connection_problem(self, app: _App) -> str | None:
        """The :data:`X_ERRORS` name X would refuse a new stream connection with, if any."""
        with self._lock:
            if not app.rules:
                return "rule-configuration-issue"
            live = [number for number, (name, sock) in self._stream_sockets.items()
                    if name == app.name and not _peer_gone(sock)]
            if self.refuse_extra_connections and len(live) >= self.stream_connections:
                return "too-many-connections"
        return None

    def track_stream(self, app: _App, stream: _StreamConnection, sock: socket.socket) -> None:
        with self._lock:
            self._stream_sockets[stream.number] = (app.name, sock)

    def untrack_stream(self, stream: _StreamConnection) -> None:
        with self._lock:
            self._stream_sockets.pop(stream.number, None)

    def rule_counts(self, app: _App) -> dict[str, Any]:
        """``GET .../rules/counts``: the caps of the access level and the rules in use."""
        with self._lock:
            self._rules_calls.append({"app": app.name, "method": "GET", "action": "counts"})
            counts = {other.name: len(other.rules) for other in self._apps.values()}
        # One project holds every app here, each app capped as the project is.
        return {"data": {
            "cap_per_client_app": str(self.max_rules),
            "cap_per_project": str(self.max_rules),
            "project_rules_count": str(sum(counts.values())),
            "client_app_rules_count": {"client_app_id": app.name, "rule_count": counts[app.name]},
            "all_project_client_apps": [{"client_app_id": name, "rule_count": count}
                                        for name, count in counts.items()],
        }}

    def delete_all_rules(self, app: _App, dry_run: bool) -> tuple[int, dict[str, Any]]:
        """``POST .../rules?delete_all=true``."""
        with self._lock:
            self._rules_calls.append({"app": app.name, "method": "POST",
                                      "action": "delete_all", "dry_run": dry_run})
            return self._delete_rules(app, sorted(app.rules), dry_run)

    def open_stream(self, app: _App, query: dict[str, list[str]]) -> _StreamConnection:
        def requested(name: str) -> frozenset[str]:
            return frozenset(item for value in query.get(name, []) for item in value.split(","))

        with self._lock:
            open_streams = [s for s in app.streams if not s.closed]
            if not open_streams:
                app.next_post_at = None  # the first post comes a gap after connecting
            for oldest in open_streams[:len(open_streams) - self.max_stream_connections + 1]:
                oldest.closed = True  # the newer connection wins (see the module doc)
            self._connections_opened += 1
            stream = _StreamConnection(
                self._connections_opened, app.name,
                tweet_fields=DEFAULT_TWEET_FIELDS | requested("tweet.fields"),
                user_fields=DEFAULT_USER_FIELDS | requested("user.fields"),
                place_fields=DEFAULT_PLACE_FIELDS | requested("place.fields"),
                expansions=requested("expansions"),
                faults=self._connection_faults.get(self._connections_opened),
            )
            app.streams = [s for s in app.streams if not s.closed] + [stream]
            if stream.faults is not None and stream.faults.stall_seconds:
                stream.stall_until = time.monotonic() + stream.faults.stall_seconds
            return stream

    def make_due_posts(self, app: _App) -> None:
        """Make the app's posts that are due and give each to every open connection.

        The app's clock, not a connection's, paces the posts, so redundant connections
        share one stream of posts; a connection's faults drop its own copy.
        """
        now = time.monotonic()
        with self._lock:
            if app.next_post_at is None:
                app.next_post_at = now + app.generator.next_gap(self.rate)
            # Never catch up more than a second of posts after a pause of the process.
            app.next_post_at = max(app.next_post_at, now - 1.0)
            while app.next_post_at <= now:
                app.next_post_at += app.generator.next_gap(self.rate)
                exhausted = (self.max_posts is not None
                             and self._posts_made >= self.max_posts)
                streams = [s for s in app.streams if not s.closed]
                if self.paused or exhausted or not app.generator.has_rules or not streams:
                    continue
                post = app.generator.next_post(self._next_post_id, datetime.now(UTC))
                self._next_post_id += 1
                self._posts_made += 1
                for stream in streams:
                    if stream.faults is not None and stream.faults.drops_next():
                        continue
                    stream.outbox.append(
                        json.dumps(_shape(post, stream), ensure_ascii=False).encode("utf-8"))

    def take_post(self, stream: _StreamConnection) -> bytes | None:
        """The next post to write on this connection, if one waits."""
        with self._lock:
            return stream.outbox.popleft() if stream.outbox else None

    def next_post_due(self, app: _App) -> float:
        """When (monotonic) the app's next post is due."""
        with self._lock:
            return app.next_post_at if app.next_post_at is not None else time.monotonic()

    def set_connection_faults(self, settings: dict[str, Any]) -> None:
        """Faults of one connection (``POST /_sim/connections``, see the module doc)."""
        number = int(settings["connection"])
        faults = _ConnectionFaults(float(settings.get("drop_fraction", 0.0)),
                                   int(settings.get("seed", 0)),
                                   float(settings.get("stall_seconds", 0.0)))
        with self._lock:
            self._connection_faults[number] = faults
            for app in self._apps.values():
                for stream in app.streams:
                    if stream.number == number:
                        stream.faults = faults
                        if faults.stall_seconds:
                            stream.stall_until = time.monotonic() + faults.stall_seconds
        log.info("connection faults set", extra={"faults": settings})

    def connections(self) -> list[dict[str, Any]]:
        """Per connection ever given faults or opened and still known: sent, dropped, held."""
        with self._lock:
            known = {s.number: s for app in self._apps.values() for s in app.streams}
            numbers = sorted(set(known) | set(self._connection_faults))
            report = []
            for number in numbers:
                stream = known.get(number)
                faults = stream.faults if stream else self._connection_faults.get(number)
                report.append({
                    "connection": number,
                    "app": stream.app if stream else None,
                    "open": bool(stream and not stream.closed),
                    "posts_sent": stream.posts_sent if stream else 0,
                    "held": len(stream.outbox) if stream else 0,
                    "drop_fraction": faults.drop_fraction if faults else 0.0,
                    "dropped": faults.dropped if faults else 0,
                })
            return report

    def record_sent(self, stream: _StreamConnection, payload: bytes) -> None:
        with self._lock:
            self._posts_sent += 1
            stream.posts_sent += 1
            self._sent_log.append({"seq": self._posts_sent, "connection": stream.number,
                                   "app": stream.app, "payload": payload.decode("utf-8")})

    def close_stream(self, app: _App, stream: _StreamConnection) -> None:
        with self._lock:
            stream.closed = True
            app.streams = [s for s in app.streams if s is not stream]


def _shape(post: dict[str, Any], stream: _StreamConnection) -> dict[str, Any]:
    """The post with only the fields and expansions the client asked for."""

    def tweet(data: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in data.items() if key in stream.tweet_fields}

    includes: dict[str, Any] = {}
    source = post.get("includes", {})
    if "author_id" in stream.expansions and "users" in source:
        includes["users"] = [{key: value for key, value in user.items()
                              if key in stream.user_fields} for user in source["users"]]
    if "referenced_tweets.id" in stream.expansions and "tweets" in source:
        includes["tweets"] = [tweet(original) for original in source["tweets"]]
    if "geo.place_id" in stream.expansions and "places" in source:
        includes["places"] = [{key: value for key, value in place.items()
                               if key in stream.place_fields} for place in source["places"]]
    shaped: dict[str, Any] = {"data": tweet(post["data"])}
    if includes:
        shaped["includes"] = includes
    shaped["matching_rules"] = post["matching_rules"]
    return shaped


def _now() -> str:
    return x_timestamp(datetime.now(UTC))


def _invalid_request(message: str) -> dict[str, Any]:
    return {"errors": [{"parameters": {}, "message": message}], "title": "Invalid Request",
            "detail": "One or more parameters to your request was invalid.",
            "type": PROBLEMS + "invalid-request"}


def _problem(status: int, title: str, kind: str = "about:blank") -> dict[str, Any]:
    return {"title": title, "detail": title, "type": kind, "status": status}


# --- real faults ---------------------------------------------------------------------

_STREAMING_CONNECTION = PROBLEMS + "streaming-connection"
_CLIENT_NOT_ENROLLED_DETAIL = (
    "When authenticating requests to the Twitter API v2 endpoints, you must use keys and "
    "tokens from a Twitter developer App that is attached to a Project. You can create a "
    "project via the developer portal.")

# The errors X answers with, by name: (HTTP status, body), the bodies as captured
# (ids of tests/producer/samples/errors.json: E-I4, E-I6, E-I10, E-I8, E-D2, E-U1,
# E-I9), the account and client ids masked as their reporters masked them.
X_ERRORS: dict[str, tuple[int, dict[str, Any]]] = {
    "unauthorized": (401, _problem(401, "Unauthorized")),
    "client-not-enrolled": (403, {
        "client_id": "*******", "detail": _CLIENT_NOT_ENROLLED_DETAIL,
        "registration_url": "https://developer.twitter.com/en/docs/projects/overview",
        "title": "Client Forbidden", "required_enrollment": "Appropriate Level of API Access",
        "reason": "client-not-enrolled", "type": PROBLEMS + "client-forbidden"}),
    "rule-configuration-issue": (409, {
        "title": "ConnectionException",
        "detail": "You must define rules using the POST /2/tweets/search/stream/rules "
                  "endpoint before connecting to filtered stream.",
        "connection_issue": "RuleConfigurationIssue", "type": _STREAMING_CONNECTION}),
    "usage-cap-exceeded": (429, {
        "account_id": "<redacted>", "product_name": "standard-basic",
        "title": "UsageCapExceeded", "period": "Monthly", "scope": "Product",
        "detail": "Usage cap exceeded: Monthly product cap", "type": PROBLEMS + "usage-capped"}),
    "too-many-connections": (429, {
        "title": "ConnectionException",
        "detail": "This stream is currently at the maximum allowed connection limit.",
        "connection_issue": "TooManyConnections", "type": _STREAMING_CONNECTION}),
    "rate-limit": (429, _problem(429, "Too Many Requests")),
    "internal-error": (500, _problem(500, "Internal Server Error")),
    "service-unavailable": (503, _problem(503, "Service Unavailable")),
}
# What a fault that names a status only answers.
ERROR_FOR_STATUS = {401: "unauthorized", 403: "client-not-enrolled",
                    409: "rule-configuration-issue", 429: "rate-limit", 500: "internal-error",
                    503: "service-unavailable"}
_ERRORS = {status: X_ERRORS[name][1] for status, name in ERROR_FOR_STATUS.items()}
# The rate-limit headers of a 429: a rate limit has used its window up; a usage cap
# leaves the window almost untouched (E-I8: 39999 of 40000 remaining).
_RATE_LIMIT_HEADERS = {"rate-limit": (50, 0), "too-many-connections": (50, 49),
                       "usage-cap-exceeded": (40000, 39999)}
RATE_LIMIT_WINDOW_SECONDS = 15 * 60

# The in-stream notice before X closes a stream: the bodies of E-I3
# (OperationalDisconnect) and E-D1 (UpstreamOperationalDisconnect); the other types
# of X's spec take the first one's wording (no capture of them was found).
DISCONNECT_DETAILS = {
    "OperationalDisconnect": "This stream has been disconnected for operational reasons.",
    "UpstreamOperationalDisconnect":
        "This stream has been disconnected upstream for operational reasons.",
}
DISCONNECT_TYPES = ("OperationalDisconnect", "UpstreamOperationalDisconnect",
                    "ForceDisconnect", "UpstreamUncleanDisconnect", "SlowReader",
                    "InternalError", "ClientApplicationStateDegraded", "InvalidRules")
_CLOSE_STREAM = b"<close the stream>"  # a marker in raw_lines, never written


def disconnect_line(disconnect_type: str) -> bytes:
    """The stream line X sends before closing a stream for ``disconnect_type``."""
    if disconnect_type not in DISCONNECT_TYPES:
        raise ValueError(f"disconnect_type must be one of {', '.join(DISCONNECT_TYPES)}")
    detail = DISCONNECT_DETAILS.get(disconnect_type, DISCONNECT_DETAILS["OperationalDisconnect"])
    return json.dumps({"errors": [{
        "title": "operational-disconnect", "disconnect_type": disconnect_type,
        "detail": detail, "type": PROBLEMS + "operational-disconnect"}]}).encode()


@dataclass(frozen=True)
class _Refusal:
    """One scripted answer to a stream connection: an :data:`X_ERRORS` entry."""

    error: str
    reset_in: float = RATE_LIMIT_WINDOW_SECONDS

    @property
    def status(self) -> int:
        return X_ERRORS[self.error][0]

    @classmethod
    def of(cls, fault: dict[str, Any]) -> _Refusal:
        if "error" in fault:
            error = str(fault["error"])
            if error not in X_ERRORS:
                raise ValueError(f"error must be one of {', '.join(X_ERRORS)}")
        else:
            status = int(fault.get("status", 503))
            if status not in ERROR_FOR_STATUS:
                raise ValueError(f"status must be one of {sorted(ERROR_FOR_STATUS)}")
            error = ERROR_FOR_STATUS[status]
        return cls(error, float(fault.get("reset_in", RATE_LIMIT_WINDOW_SECONDS)))

    def headers(self) -> dict[str, str]:
        if self.error not in _RATE_LIMIT_HEADERS:
            return {}
        limit, remaining = _RATE_LIMIT_HEADERS[self.error]
        return {"x-rate-limit-limit": str(limit), "x-rate-limit-remaining": str(remaining),
                "x-rate-limit-reset": str(int(time.time() + self.reset_in))}


def _peer_gone(sock: socket.socket) -> bool:
    """True if the client of this connection hung up (it reads as end of file)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


def _base32hex(number: int) -> str:
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUV"
    return "".join(digits[(number >> shift) & 31] for shift in range(75, -1, -5))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # chunked streaming needs 1.1
    sim: XApiSimulator

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http %s", format % args)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/_sim/state":
            return self._json(200, self.sim.state())
        if url.path == "/_sim/sent":
            after = int(query.get("after", ["0"])[0])
            return self._json(200, {"posts": self.sim.sent(after)})
        if url.path == "/_sim/connections":
            return self._json(200, {"connections": self.sim.connections()})
        app = self._authenticated()
        if app is None:
            return None
        if url.path == RULES_COUNTS_PATH:
            return self._json(200, self.sim.rule_counts(app))
        if url.path == RULES_PATH:
            ids = query["ids"][0].split(",") if "ids" in query else None
            try:
                page = self.sim.get_rules(app, ids, int(query.get("max_results", [1000])[0]),
                                          query.get("pagination_token", [None])[0])
            except ValueError as error:
                return self._json(400, _invalid_request(str(error)))
            return self._json(200, page)
        if url.path == STREAM_PATH:
            return self._stream(app, query)
        return self._json(404, _problem(404, "Not Found"))

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        except ValueError:
            return self._json(400, _invalid_request("the body is not JSON"))
        if url.path in ("/_sim/faults", "/_sim/generation", "/_sim/connections"):
            try:
                if url.path == "/_sim/faults":
                    self.sim.inject(body)
                elif url.path == "/_sim/connections":
                    self.sim.set_connection_faults(body)
                else:
                    self.sim.configure_generation(body)
            except (ValueError, TypeError, KeyError, AttributeError) as error:
                return self._json(400, {"error": str(error)})
            return self._json(200, {"ok": True})
        app = self._authenticated()
        if app is None:
            return None
        if url.path == RULES_PATH:
            flags = parse_qs(url.query)
            dry_run = flags.get("dry_run", ["false"])[0].lower() == "true"
            if flags.get("delete_all", ["false"])[0].lower() == "true":
                if body:  # X: delete_all is sent with no add or delete
                    return self._json(400, _invalid_request("delete_all takes no body"))
                status, response = self.sim.delete_all_rules(app, dry_run)
            else:
                status, response = self.sim.change_rules(app, body, dry_run)
            return self._json(status, response)
        return self._json(404, _problem(404, "Not Found"))

    def _authenticated(self) -> _App | None:
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        app = self.sim.app_for(token.strip()) if scheme == "Bearer" else None
        if app is None:
            self._json(401, _ERRORS[401])
        return app

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    # --- the stream -------------------------------------------------------------------

    def _stream(self, app: _App, query: dict[str, list[str]]) -> None:
        refusal = self.sim.take_refusal()
        if refusal is None and (problem := self.sim.connection_problem(app)) is not None:
            refusal = _Refusal(problem)
        if refusal is not None:
            status, body = X_ERRORS[refusal.error]
            return self._json(status, body, refusal.headers())
        stream = self.sim.open_stream(app, query)
        self.sim.track_stream(app, stream, self.connection)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        try:
            self._feed(app, stream)
        except OSError:
            pass  # the client went away: nothing more to send
        finally:
            self.sim.untrack_stream(stream)
            self.sim.close_stream(app, stream)
            self.close_connection = True

    def _feed(self, app: _App, stream: _StreamConnection) -> None:
        now = time.monotonic()
        next_keep_alive_at = now + self.sim.keep_alive_seconds
        while not (stream.closed or self.sim.stopping.is_set()):
            # Posts are made on the app's clock whatever this connection does: a stalled
            # connection holds its share back, its redundant twin keeps receiving.
            self.sim.make_due_posts(app)
            now = time.monotonic()
            if stream.drop:
                # Cut the stream without the final chunk, as a dropped connection looks;
                # a shutdown (not a reset) lets what was already sent arrive.
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if now < stream.stall_until:
                time.sleep(min(0.05, stream.stall_until - now))
                continue
            if stream.raw_lines:
                line = stream.raw_lines.popleft()
                if line is _CLOSE_STREAM:  # after a disconnect notice: X closes the stream
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                    return
                self._chunk(line + b"\r\n")
                continue
            payload = self.sim.take_post(stream)
            if payload is not None:
                self._chunk(payload + b"\r\n")
                self.sim.record_sent(stream, payload)
                next_keep_alive_at = now + self.sim.keep_alive_seconds
                continue
            if now >= next_keep_alive_at:
                self._chunk(b"\r\n")
                next_keep_alive_at = now + self.sim.keep_alive_seconds
                continue
            time.sleep(max(0.0, min(0.05, self.sim.next_post_due(app) - now,
                                    next_keep_alive_at - now)))

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%X\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()
