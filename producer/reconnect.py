"""How long to wait before reconnecting the filtered stream, per X's documented policy.

From X's "Handling disconnections" guide for the v2 filtered stream:

* once an established connection drops, reconnect immediately; if that fails,
  back off **linearly for TCP/IP errors**: +250 ms per attempt, up to 16 s;
* back off **exponentially for HTTP errors**: 5 s, doubling, up to 320 s;
* back off **exponentially for HTTP 429**: 1 minute, doubling (every 429 extends
  the penalty). We stop doubling at 15 minutes, the length of a rate-limit window;
* a stream that sends neither data nor a keep-alive for 20 s is **stalled** and
  is treated as a dropped connection.

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
    RATE_LIMITED = "rate-limited"  # 429 (or the v1 era's 420)


LINEAR_CAUSES = frozenset({ReconnectCause.DROPPED, ReconnectCause.NETWORK, ReconnectCause.STALL})

NETWORK_STEP_SECONDS = 0.25
NETWORK_MAX_SECONDS = 16.0
HTTP_START_SECONDS = 5.0
HTTP_MAX_SECONDS = 320.0
RATE_LIMIT_START_SECONDS = 60.0
RATE_LIMIT_MAX_SECONDS = 900.0
STALL_TIMEOUT_SECONDS = 20.0


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

    def next_wait(self, cause: ReconnectCause) -> float:
        """Record the wait before the next attempt and return it in scaled seconds."""
        with self._lock:
            if cause in LINEAR_CAUSES:
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
