"""The forwards' retry delays: 50 ms doubling to 15 s, reset after a second of health."""

from __future__ import annotations

from podlink.session.ports import Backoff


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_delays_double_up_to_the_cap() -> None:
    backoff = Backoff(clock=Clock())
    delays = [backoff.failed() for _ in range(12)]
    assert delays == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 15.0, 15.0, 15.0]


def test_a_second_of_health_starts_over() -> None:
    clock = Clock()
    backoff = Backoff(clock=clock)
    for _ in range(5):
        backoff.failed()
    backoff.succeeded()
    clock.now += 1.0
    assert backoff.failed() == 0.05


def test_a_flapping_target_keeps_the_longer_delay() -> None:
    clock = Clock()
    backoff = Backoff(clock=clock)
    assert [backoff.failed() for _ in range(4)] == [0.05, 0.1, 0.2, 0.4]
    backoff.succeeded()
    clock.now += 0.3  # up, but not for long
    assert backoff.failed() == 0.8
