"""Business-hours calendars: a time zone, working hours per weekday and holidays.

SLA targets count business seconds only: a 4-hour first-response target for a
complaint that arrives on Friday at 16:00 in a Mon–Fri 09:00–17:00 calendar is due
on Monday at 12:00 (or Tuesday, when Monday is a public holiday).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays as holidays_lib

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_DAYS = 800  # how far the calendar walks before it gives up (a calendar with no open hour)


@lru_cache(maxsize=64)
def _holidays(country: str, subdiv: str | None):
    return holidays_lib.country_holidays(country, subdiv=subdiv)


def _parse(hhmm: str) -> time | None:
    if hhmm == "24:00":
        return None  # midnight at the end of the day
    hours, minutes = hhmm.split(":")
    return time(int(hours), int(minutes))


class BusinessCalendar:
    def __init__(self, *, tz: str = "UTC", hours: dict | None = None, holiday_country: str | None = None,
                 holiday_subdiv: str | None = None, extra_holidays: list | None = None) -> None:
        self.zone = ZoneInfo(tz)
        self.spans: dict[int, list[tuple[time, time | None]]] = {}
        for day, ranges in (hours or {}).items():
            self.spans[DAYS.index(day)] = sorted((_parse(a), _parse(b)) for a, b in ranges)
        self.always_open = not any(self.spans.values())
        self.country, self.subdiv = holiday_country, holiday_subdiv
        self.extra = {d if isinstance(d, date) else date.fromisoformat(d) for d in (extra_holidays or [])}
        # A calendar is immutable (a changed one is a new instance): each day's open intervals
        # are worked out once. Every new case asks for six due times that walk the same days.
        self._days: dict[date, list[tuple[datetime, datetime]]] = {}
        self._wanted: dict[tuple, list[tuple[timedelta, int]]] = {}

    @classmethod
    def from_row(cls, row) -> BusinessCalendar:
        return cls(tz=row.timezone, hours=row.hours, holiday_country=row.holiday_country,
                   holiday_subdiv=row.holiday_subdiv, extra_holidays=row.extra_holidays)

    def is_holiday(self, day: date) -> bool:
        if day in self.extra:
            return True
        return bool(self.country) and day in _holidays(self.country, self.subdiv)

    def _open_intervals(self, day: date) -> list[tuple[datetime, datetime]]:
        intervals = self._days.get(day)
        if intervals is None:
            intervals = self._days[day] = self._work_out(day)
        return intervals

    def _work_out(self, day: date) -> list[tuple[datetime, datetime]]:
        if self.is_holiday(day):
            return []
        out = []
        for start, end in self.spans.get(day.weekday(), []):
            a = datetime.combine(day, start, self.zone)
            b = (datetime.combine(day + timedelta(days=1), time(0), self.zone) if end is None
                 else datetime.combine(day, end, self.zone))
            out.append((a.astimezone(timezone.utc), b.astimezone(timezone.utc)))
        return out

    def add(self, start: datetime, seconds: float) -> datetime:
        """The moment ``seconds`` of business time after ``start``."""
        return self.add_many(start, (seconds,))[0]

    def add_many(self, start: datetime, seconds: tuple[float, ...] | list[float]) -> list[datetime]:
        """:meth:`add` for several amounts from one start, in one walk over the days (an SLA
        clock needs its half-way mark, its warning and its due time)."""
        if self.always_open:
            return [start + timedelta(seconds=s) for s in seconds]
        key = tuple(seconds)
        wanted = self._wanted.get(key)
        if wanted is None:  # the same few targets every time: sorted once
            if len(self._wanted) >= 256:
                self._wanted.clear()
            wanted = self._wanted[key] = sorted((timedelta(seconds=max(0.0, s)), i) for i, s in enumerate(seconds))
        out: list[datetime | None] = [None] * len(wanted)
        used = timedelta(0)  # business time between start and the interval being looked at
        n = 0
        day = start.astimezone(self.zone).date() - timedelta(days=1)
        for _ in range(MAX_DAYS):
            for a, b in self._open_intervals(day):
                if b <= start:
                    continue
                a = max(a, start)
                while n < len(wanted) and a + (wanted[n][0] - used) <= b:
                    out[wanted[n][1]] = a + (wanted[n][0] - used)
                    n += 1
                if n == len(wanted):
                    return out
                used += b - a
            day += timedelta(days=1)
        raise ValueError("the calendar has no business hours within two years")

    def between(self, a: datetime, b: datetime) -> float:
        """Business seconds in [a, b)."""
        if b <= a:
            return 0.0
        if self.always_open:
            return (b - a).total_seconds()
        total = 0.0
        day = a.astimezone(self.zone).date() - timedelta(days=1)
        last = b.astimezone(self.zone).date()
        while day <= last:
            for x, y in self._open_intervals(day):
                lo, hi = max(x, a), min(y, b)
                if hi > lo:
                    total += (hi - lo).total_seconds()
            day += timedelta(days=1)
        return total

    def is_open(self, at: datetime) -> bool:
        if self.always_open:
            return True
        day = at.astimezone(self.zone).date()
        return any(a <= at < b for d in (day - timedelta(days=1), day) for a, b in self._open_intervals(d))
