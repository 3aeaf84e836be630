"""The one way to wait in this project: poll a condition until it holds or a deadline passes.

Every part uses it, from the hosts' services to the controller's health checks and
the tests, so a deadline, an interval and what counts as "not yet" read the same
everywhere. Built on tenacity.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_delay,
    wait_fixed,
)

T = TypeVar("T")


class WaitTimeout(TimeoutError):
    """A condition did not hold within its deadline; the message says what and the last try."""


@dataclass(frozen=True)
class GaveUp:
    outcome: object  # tenacity's Future of the last attempt


def poll(attempt: Callable[[], T], accept: Callable[[T], bool], timeout: float,
         interval: float, ignore: tuple[type[BaseException], ...]) -> T | GaveUp:
    """The first result of ``attempt`` that ``accept`` takes, or what the last try gave."""
    def gave_up(state: RetryCallState) -> GaveUp:
        return GaveUp(state.outcome)

    return Retrying(stop=stop_after_delay(timeout), wait=wait_fixed(interval),
                    retry=retry_if_exception_type(ignore) | retry_if_result(
                        lambda value: not accept(value)),
                    retry_error_callback=gave_up)(attempt)


def wait_for(condition: Callable[[], T], timeout: float, *, what: str, interval: float = 1.0,
             ignore: tuple[type[BaseException], ...] = ()) -> T:
    """Call ``condition`` until it returns something truthy, and return that.

    Errors of the types in ``ignore`` count as "not yet"; any other error is raised
    at once. After ``timeout`` seconds :class:`WaitTimeout` names ``what`` and the
    last value or error seen.
    """
    result = poll(condition, bool, timeout, interval, ignore)
    if isinstance(result, GaveUp):
        outcome = result.outcome
        last = outcome.exception() if outcome.failed else outcome.result()
        raise WaitTimeout(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")
    return result


def poll_until(attempt: Callable[[], T], accept: Callable[[T], bool], timeout: float, *,
               interval: float = 1.0) -> tuple[bool, T]:
    """Call ``attempt`` until ``accept`` takes its value: (True, it), or (False, the last one).

    For checks that report what they saw either way (a health command's last state).
    """
    result = poll(attempt, accept, timeout, interval, ())
    if isinstance(result, GaveUp):
        return False, result.outcome.result()
    return True, result
