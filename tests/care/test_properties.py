"""Property tests for the scoring rule and the business-hours arithmetic."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings, strategies as st

from socialzone_care import priority
from socialzone_care.calendars import BusinessCalendar
from socialzone_care.settings import CareSettings

WEIGHTS = CareSettings().priority_weights
CAL = BusinessCalendar(tz="Europe/Berlin", holiday_country="DE",
                       hours={d: [["08:00", "12:00"], ["13:00", "17:30"]] for d in ("mon", "tue", "wed", "thu", "fri")}
                       | {"sat": [["10:00", "14:00"]]})

inputs = st.builds(
    priority.Inputs,
    intents=st.lists(st.sampled_from(["complaint", "question", "churn_risk", "praise", "referral"]),
                     max_size=3).map(tuple),
    sentiment_score=st.none() | st.floats(-1, 1),
    followers=st.none() | st.integers(0, 10**9),
    lifetime_value=st.floats(-1e6, 1e9),
    advocate_tier=st.sampled_from(["none", "bronze", "silver", "gold", "platinum"]),
    open_deals=st.integers(0, 20),
    crisis=st.lists(st.tuples(st.text(min_size=1, max_size=8), st.sampled_from(["info", "warning", "critical"])),
                    max_size=2).map(tuple),
    sla_used=st.none() | st.floats(0, 5),
    sla_metric=st.just("first_response"),
    escalated=st.booleans(),
)


@given(inputs)
def test_priority_is_between_1_and_100_and_is_the_sum_of_its_explained_factors(value):
    score, label, factors = priority.compute(value, WEIGHTS)
    assert 1 <= score <= 100 and label == priority.label(score)
    assert {f["name"] for f in factors} == set(WEIGHTS)
    for f in factors:
        assert 0 <= f["points"] <= f["weight"] == WEIGHTS[f["name"]]
    assert score == min(100, max(1, round(sum(f["points"] for f in factors))))


@given(inputs, st.sampled_from(["sentiment", "reach", "customer_value", "open_deals", "crisis", "escalation"]))
def test_a_worse_factor_never_lowers_the_priority(value, which):
    from dataclasses import replace

    worse = {"sentiment": replace(value, sentiment_score=-1.0), "reach": replace(value, followers=10**7),
             "customer_value": replace(value, lifetime_value=1e6),
             "open_deals": replace(value, open_deals=value.open_deals + 1),
             "crisis": replace(value, crisis=value.crisis + (("t", "critical"),)),
             "escalation": replace(value, escalated=True)}[which]
    assert priority.compute(worse, WEIGHTS)[0] >= priority.compute(value, WEIGHTS)[0]


moments = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31),
                       timezones=st.just(timezone.utc))


@settings(max_examples=150, deadline=None)
@given(moments, st.integers(0, 200 * 3600))
def test_adding_business_seconds_is_measured_back_by_between(start, seconds):
    due = CAL.add(start, seconds)
    assert due >= start
    assert abs(CAL.between(start, due) - seconds) < 1e-6
    if seconds > 0:
        assert CAL.is_open(due - timedelta(microseconds=1))


@settings(max_examples=100, deadline=None)
@given(moments, st.integers(0, 50 * 3600), st.integers(0, 50 * 3600))
def test_business_time_adds_up(start, a, b):
    assert CAL.add(CAL.add(start, a), b) == CAL.add(start, a + b)


def _add_one_walk_each(cal: BusinessCalendar, start: datetime, seconds: float) -> datetime:
    """The walk add() did before add_many: one amount at a time (the reference)."""
    remaining = timedelta(seconds=max(0.0, seconds))
    day = start.astimezone(cal.zone).date() - timedelta(days=1)
    while True:
        for a, b in cal._open_intervals(day):
            if b <= start:
                continue
            a = max(a, start)
            if a + remaining <= b:
                return a + remaining
            remaining -= b - a
        day += timedelta(days=1)


@settings(max_examples=150, deadline=None)
@given(moments, st.lists(st.floats(-10, 100 * 3600, allow_nan=False), min_size=1, max_size=4))
def test_several_amounts_in_one_walk_are_each_what_one_walk_each_gives(start, amounts):
    assert CAL.add_many(start, amounts) == [_add_one_walk_each(CAL, start, s) for s in amounts]
