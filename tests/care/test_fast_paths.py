"""The shortcuts of the batch path give what the plain code gives: the remembered priority
parts, the outbox envelopes written as bytes, the driver-level writes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson
from hypothesis import given, settings, strategies as st
from sqlalchemy import select

from socialzone_common import outbox
from socialzone_common.catalog import entry_for
from socialzone_common.envelope import from_structured, to_structured
from socialzone_common.events.care import CaseAssigned, CaseOpened
from socialzone_common.outbox import OutboxMessage
from socialzone_care import batch, priority
from socialzone_care.calendars import BusinessCalendar
from socialzone_care.common import SOURCE

from tests.care.test_batch import arrange, run_both, stream, two_runtimes  # noqa: F401  (a fixture)

WEIGHTS = {"base": 10.0, "intent": 20.0, "sentiment": 15.0, "reach": 10.0, "customer_value": 15.0,
           "advocate_tier": 10.0, "open_deals": 10.0, "crisis": 25.0, "sla": 15.0, "escalation": 20.0}
numbers = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e7, max_value=1e7)
inputs = st.builds(
    priority.Inputs,
    intents=st.lists(st.sampled_from(["complaint", "question", "churn_risk", "praise", "purchase_intent"]),
                     max_size=3).map(tuple),
    sentiment_score=st.none() | st.sampled_from([0.0, -0.0, -0.8, 0.5]) | st.floats(-1, 1),
    followers=st.none() | st.integers(0, 10_000_000) | st.sampled_from([0, 1.0, 5.0, True]),
    lifetime_value=st.sampled_from([0.0, -0.0, 0, 120.0, 120]) | numbers,
    advocate_tier=st.sampled_from(["none", "bronze", "gold", "platinum", "unknown"]),
    open_deals=st.integers(0, 5) | st.sampled_from([1.0, True]),
    crisis=st.lists(st.tuples(st.sampled_from(["general", "hashtag:outage"]),
                              st.sampled_from(["critical", "warning", "info", "odd"])), max_size=2).map(tuple),
    sla_used=st.none() | st.sampled_from([0.0, -0.0, 0, 1, 1.0, 0.5]) | st.floats(0, 3),
    sla_metric=st.sampled_from([None, "first_response", "resolution"]),
    escalated=st.booleans() | st.sampled_from([0, 1]))


@settings(max_examples=500, deadline=None)
@given(first=inputs, second=inputs, weights=st.sampled_from([WEIGHTS, {**WEIGHTS, "sla": 30.0}, {"base": 50}]))
def test_remembered_priority_parts_give_what_the_plain_computation_gives(first, second, weights):
    for one in (first, second, first):  # the second and third time from what is remembered
        fast, plain = priority.compute(one, weights), priority.compute_plain(one, weights)
        assert fast == plain
        assert orjson.dumps(fast) == orjson.dumps(plain)  # also 0 vs 0.0, -0.0 vs 0.0
        assert [type(f["value"]) for f in fast[2]] == [type(f["value"]) for f in plain[2]]


def test_both_sla_clocks_in_one_walk_fall_where_one_walk_each_does():
    calendar = BusinessCalendar(hours={d: [["09:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri")},
                                tz="Europe/Berlin", holiday_country="DE")
    start = datetime(2026, 3, 6, 15, 59, 30, 123456, tzinfo=timezone.utc)
    for offset in range(0, 7 * 24 * 3600, 3917):
        at = start + timedelta(seconds=offset)
        amounts = (3600, 1800.0, 3600 * 0.8, 8 * 3600, 4 * 3600.0, 8 * 3600 * 0.8)
        assert calendar.add_many(at, amounts) == (calendar.add_many(at, amounts[:3])
                                                  + calendar.add_many(at, amounts[3:]))


def test_case_events_are_the_bytes_to_structured_writes():
    due = datetime(2026, 3, 2, 14, 0, 0, 123000, tzinfo=timezone.utc)
    time = datetime(2026, 3, 2, 11, 0, 0, 7, tzinfo=timezone.utc)
    case = batch.CaseState({"id": "c-1", "customer_id": "cus-1", "opened_from": "interaction",
                            "interaction_id": "int-1", "channel": "x", "topic": "billing",
                            "intents": ["complaint", "churn_risk"], "priority_label": "high", "queue": "general",
                            "sla_policy": "vip", "first_response_due": due, "resolution_due": None},
                           persisted=False)
    opened = CaseOpened(case_id="c-1", customer_id="cus-1", opened_from="interaction", interaction_id="int-1",
                        channel="x", topic="billing", intents=("complaint", "churn_risk"), priority="high",
                        queue="general", sla_policy="vip", first_response_due=due, resolution_due=None)
    assigned = CaseAssigned(case_id="c-1", customer_id="cus-1", queue="general", assignee_id="ann",
                            assignee_kind="agent", previous_assignee_id=None, rule="round_robin")
    for traceparent in (None, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"):
        for payload, data in ((opened, batch.opened_data(case)),
                              (assigned, batch.assigned_data(case, assignee_id="ann", kind="agent", previous=None,
                                                             rule="round_robin"))):
            envelope = payload.to_envelope(source=SOURCE, event_id="e-1", time=time, traceparent=traceparent)
            assert outbox.structured_row(payload.event_type, source=SOURCE, subject="cus-1", data=data,
                                         event_id="e-1", time=time, traceparent=traceparent) == \
                ("e-1", payload.event_type, "zone.care", "cus-1", to_structured(envelope))


def test_the_batch_outbox_rows_are_what_enqueue_would_write(two_runtimes):  # noqa: F811
    """Every event the batch wrote, rebuilt from its payload through the pydantic models and
    to_structured, gives the same bytes (same id, time and trace context)."""
    reference, batched = two_runtimes
    arrange(reference)
    arrange(batched)
    run_both(reference, batched, stream())
    with batched.engine.connect() as conn:
        rows = conn.execute(select(OutboxMessage.__table__).order_by(OutboxMessage.__table__.c.id)).all()
    checked = 0
    for row in rows:
        envelope = from_structured(row.envelope)
        if envelope.type not in (CaseOpened.event_type, CaseAssigned.event_type):
            continue
        payload = entry_for(envelope.type).model.model_validate(envelope.data)
        expected = to_structured(payload.to_envelope(source=SOURCE, event_id=envelope.id, time=envelope.time,
                                                     traceparent=envelope.traceparent))
        assert row.envelope == expected
        assert (row.event_id, row.event_type, row.topic, row.partition_key) == (
            envelope.id, envelope.type, entry_for(envelope.type).topic.name, payload.customer_id)
        checked += 1
    assert checked >= 15
