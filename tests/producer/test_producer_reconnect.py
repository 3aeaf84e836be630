"""X's documented reconnect policy, as numbers."""

from __future__ import annotations

import pytest

from evilnet.producer.reconnect import ReconnectCause, ReconnectPolicy

DROPPED, NETWORK, STALL = ReconnectCause.DROPPED, ReconnectCause.NETWORK, ReconnectCause.STALL
HTTP, RATE_LIMITED = ReconnectCause.HTTP_ERROR, ReconnectCause.RATE_LIMITED


def _waits(policy: ReconnectPolicy) -> list[float]:
    return [wait.seconds for wait in policy.history]


def test_network_errors_back_off_linearly_by_250_ms_up_to_16_s() -> None:
    policy = ReconnectPolicy()

    for _ in range(70):
        policy.next_wait(NETWORK)

    waits = _waits(policy)
    assert waits[:5] == [0.0, 0.25, 0.5, 0.75, 1.0]  # the first retry is immediate
    assert waits[64:] == [16.0] * 6
    assert max(waits) == 16.0


def test_http_errors_back_off_exponentially_from_5_s_up_to_320_s() -> None:
    policy = ReconnectPolicy()

    for _ in range(9):
        policy.next_wait(HTTP)

    assert _waits(policy) == [5, 10, 20, 40, 80, 160, 320, 320, 320]


def test_rate_limits_back_off_exponentially_from_a_minute() -> None:
    policy = ReconnectPolicy()

    for _ in range(6):
        policy.next_wait(RATE_LIMITED)

    assert _waits(policy) == [60, 120, 240, 480, 900, 900]


def test_a_successful_connection_starts_every_backoff_afresh() -> None:
    policy = ReconnectPolicy()
    for cause in (NETWORK, NETWORK, HTTP, HTTP, RATE_LIMITED):
        policy.next_wait(cause)

    policy.connected()
    for cause in (STALL, HTTP, RATE_LIMITED):
        policy.next_wait(cause)

    assert _waits(policy) == [0, 0.25, 5, 10, 60, 0, 5, 60]


def test_the_time_scale_shortens_the_sleep_not_the_recorded_policy() -> None:
    policy = ReconnectPolicy(time_scale=0.001)

    slept = [policy.next_wait(HTTP), policy.next_wait(HTTP)]

    assert slept == pytest.approx([0.005, 0.010])
    assert _waits(policy) == [5, 10]
    assert policy.stall_timeout == pytest.approx(0.02)


def test_a_time_scale_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        ReconnectPolicy(time_scale=0)
