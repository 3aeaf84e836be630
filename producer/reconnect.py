"""How long to wait before reconnecting the filtered stream, per X's documented policy.

From X's "Handling disconnections" guide for the v2 filtered stream:

* once an established connection drops, reconnect immediately; if that fails,
  back off **linearly for TCP/IP errors**: +250 ms per attempt, up to 16 s;
* back off **exponentially for HTTP errors**: 5 s, doubling, up to 320 s;
* back off **exponentially for HTTP 429**: 1 minute, doubling (every 429 extends
  the penalty). We stop doubling at 15 minutes, the length of a rate-limit window;
* a stream that sends neither data nor a keep-alive for 20 s is **stalled** and
  is treated as a dropped connection.

A 429 is one of three things (see producer/README.md, "X API behaviour"):

* a **rate limit**: wait until ``x-rate-limit-reset`` (the 1-minute curve when the
  header is missing);
* **TooManyConnections**, most often our own previous connection still counted
  after a read timeout or reset: wait first for it to expire (the 20 s the API,
  like a client, takes to call a silent connection dead), then the 429 curve;
* **UsageCapExceeded**: nothing helps until the cap's period resets, so the wait
  is until then (the stream client also resumes on an operator's SIGHUP).

The policy only computes and records waits; the stream client sleeps. Waits are
recorded in nominal seconds (what the guide says) and slept multiplied by
``time_scale``, so tests can run the real sequence in milliseconds and still
assert it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from enum import StrEnum


class ReconnectCause(StrEnum):
    """Why the stream is reconnecting (the ``cause`` label of the reconnect metric)."""

    DROPPED = "dropped"  # an established stream ended or broke (TCP reset, EOF, bad chunk)
    NETWORK = "network"  # a connection attempt failed below HTTP (refused, unreachable, timeout)
    STALL = "stall"  # no data and no keep-alive within the stall timeout
    HTTP_ERROR = "http-error"  # 5xx or another status worth retrying
    RATE_LIMITED = "rate-limited"  # 429 rate limit (or the v1 era's 420)
    TOO_MANY_CONNECTIONS = "too-many-connections"  # 429 TooManyConnections
    USAGE_CAPPED = "usage-capped"  # 429 UsageCapExceeded: until the period resets


LINEAR_CAUSES = frozenset({ReconnectCause.DROPPED, ReconnectCause.NETWORK, ReconnectCause.STALL})

NETWORK_STEP_SECONDS = 0.25
NETWORK_MAX_SECONDS = 16.0
HTTP_START_SECONDS = 5.0
HTTP_MAX_SECONDS = 320.0
RATE_LIMIT_START_SECONDS = 60.0
RATE_LIMIT_MAX_SECONDS = 900.0
STALL_TIMEOUT_SECONDS = 20.0
# How long the API keeps counting a connection that died on our side: it, too, calls
# a connection dead after the 20 s without a keep-alive.
ZOMBIE_CONNECTION_SECONDS = STALL_TIMEOUT_SECONDS


@dataclass(frozen=True)
class Wait:
    cause: ReconnectCause
    seconds: float  # nominal; the client sleeps seconds * time_scale


class ReconnectPolicy:
    """Backoff state of one stream connection; thread-safe."""

    def __init__(self, time_scale: float = 1.0) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.time_scale = time_scale
        self._lock = threading.Lock()
        self._history: list[Wait] = []
        self._reset()

    def _reset(self) -> None:
        # The first retry after a drop is immediate, the next ones 250 ms longer each.
        self._next_linear = 0.0
        self._next_http = HTTP_START_SECONDS
        self._next_rate_limit = RATE_LIMIT_START_SECONDS
        self._zombie_waited = False

    @property
    def history(self) -> list[Wait]:
        """Every wait decided so far, oldest first."""
        with self._lock:
            return list(self._history)

    @property
    def stall_timeout(self) -> float:
        """Seconds (scaled) of silence after which the stream counts as dropped."""
        return STALL_TIMEOUT_SECONDS * self.time_scale

    def connected(self) -> None:
        """A connection delivered data: the next failure starts the backoff afresh."""
        with self._lock:
            self._reset()

    def next_wait(self, cause: ReconnectCause, until: float | None = None) -> float:
        """Record the wait before the next attempt and return it in scaled seconds.

        ``until`` is the nominal seconds the API itself named (a rate limit's reset,
        a usage cap's period end): the wait is exactly that.
        """
        with self._lock:
            if until is not None and cause in (ReconnectCause.RATE_LIMITED,
                                               ReconnectCause.USAGE_CAPPED):
                seconds = max(0.0, until)
                if cause is ReconnectCause.RATE_LIMITED:
                    self._next_rate_limit = min(self._next_rate_limit * 2,
                                                RATE_LIMIT_MAX_SECONDS)
            elif cause is ReconnectCause.USAGE_CAPPED:
                seconds = RATE_LIMIT_MAX_SECONDS  # no period known: one window, then ask
            elif cause is ReconnectCause.TOO_MANY_CONNECTIONS and not self._zombie_waited:
                seconds = ZOMBIE_CONNECTION_SECONDS
                self._zombie_waited = True
            elif cause is ReconnectCause.TOO_MANY_CONNECTIONS:
                seconds = self._next_rate_limit
                self._next_rate_limit = min(seconds * 2, RATE_LIMIT_MAX_SECONDS)
            elif cause in LINEAR_CAUSES:
                seconds = self._next_linear
                self._next_linear = min(self._next_linear + NETWORK_STEP_SECONDS,
                                        NETWORK_MAX_SECONDS)
            elif cause is ReconnectCause.RATE_LIMITED:
                seconds = self._next_rate_limit
                self._next_rate_limit = min(seconds * 2, RATE_LIMIT_MAX_SECONDS)
            else:
                seconds = self._next_http
                self._next_http = min(seconds * 2, HTTP_MAX_SECONDS)
            self._history.append(Wait(cause, seconds))
            return seconds * self.time_scale
