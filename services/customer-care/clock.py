"""The clock customer care reads time from: the system clock, or a frozen one in tests.

Every domain function takes ``now=``; the API, the consumers and the SLA clock ask
:func:`clock_of` for the runtime's clock, so a test can freeze and advance time.
"""

from __future__ import annotations

import weakref
from datetime import datetime, timedelta, timezone
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class FrozenClock:
    """A clock that moves only when told to."""

    def __init__(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("a frozen clock needs an aware datetime")
        self._now = at.astimezone(timezone.utc)

    def now(self) -> datetime:
        return self._now

    def set(self, at: datetime) -> None:
        self._now = at.astimezone(timezone.utc)

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        self._now += delta if delta is not None else timedelta(**kwargs)
        return self._now


SYSTEM = SystemClock()
_clocks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def clock_of(runtime) -> Clock:
    return _clocks.get(runtime, SYSTEM)


def install(runtime, clock: Clock) -> Clock:
    """Make ``clock`` the time source of a care runtime (tests)."""
    _clocks[runtime] = clock
    return clock
