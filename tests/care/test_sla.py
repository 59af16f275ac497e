"""SLA clocks on business-hours calendars, driven by a frozen clock: warnings before the
breach, care.sla.breached at it, and the escalation to the team lead's queue."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from socialzone_care.calendars import BusinessCalendar

from tests.care.conftest import AGENT, attributed

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
WEEKDAYS = {d: [["09:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}


def test_business_time_skips_nights_weekends_and_public_holidays():
    cal = BusinessCalendar(tz="Europe/Berlin", hours=WEEKDAYS, holiday_country="DE")
    thursday_16 = datetime(2026, 4, 2, 16, 0, tzinfo=BERLIN)  # Good Friday and Easter Monday follow
    assert cal.add(thursday_16, 4 * 3600) == datetime(2026, 4, 7, 12, 0, tzinfo=BERLIN)
    assert cal.between(thursday_16, datetime(2026, 4, 7, 12, 0, tzinfo=BERLIN)) == 4 * 3600
    saturday = datetime(2026, 3, 7, 11, 0, tzinfo=BERLIN)
    assert cal.add(saturday, 60) == datetime(2026, 3, 9, 9, 1, tzinfo=BERLIN)
    assert not cal.is_open(saturday) and cal.is_open(datetime(2026, 3, 9, 9, 0, tzinfo=BERLIN))


def test_time_zones_split_hours_and_extra_holidays():
    cal = BusinessCalendar(tz="America/New_York", extra_holidays=[date(2026, 3, 3)],
                           hours={"mon": [["08:00", "12:00"], ["13:00", "17:00"]], "tue": [["09:00", "17:00"]],
                                  "wed": [["09:00", "17:00"]]})
    monday_11_ny = datetime(2026, 3, 2, 16, 0, tzinfo=UTC)  # 11:00 in New York
    # 1h until the lunch break, 4h in the afternoon, Tuesday is a company holiday, 1h on Wednesday
    assert cal.add(monday_11_ny, 6 * 3600) == datetime(2026, 3, 4, 10, 0, tzinfo=ZoneInfo("America/New_York"))
    always = BusinessCalendar()
    assert always.add(monday_11_ny, 90) == monday_11_ny + timedelta(seconds=90)


async def test_first_response_clock_runs_on_business_hours_warns_then_breaches_and_escalates(care):
    await care.put("/calendars/berlin", {"timezone": "Europe/Berlin", "hours": WEEKDAYS,
                                         "holiday_country": "DE"})
    await care.put("/sla-policies/standard", {"first_response_s": 4 * 3600, "next_response_s": 8 * 3600,
                                              "resolution_s": 40 * 3600, "calendar": "berlin"})
    await care.put("/queues/general", {"escalation_queue": "team-lead"})
    await care.put("/agents/ann", {"name": "Ann", "queues": ["general"]})
    await care.put("/agents/lena", {"name": "Lena", "queues": ["team-lead"], "lead": True})

    care.clock.set(datetime(2026, 4, 2, 16, 0, tzinfo=BERLIN))  # Thursday before Easter, 16:00
    await care.publish(attributed("cus-s1"))
    [case] = await care.until(lambda: care.cases(customer_id="cus-s1"))
    assert case.first_response_due == datetime(2026, 4, 7, 12, 0, tzinfo=BERLIN)
    assert case.assignee_id == "ann"
    start_priority = case.priority

    await care.advance(days=4)  # Easter Monday 16:00: still only one business hour used
    case = (await care.get(case.id))
    assert case["sla"]["warnings"] == [] and case["sla"]["breaches"] == []

    care.clock.set(datetime(2026, 4, 7, 11, 13, tzinfo=BERLIN))  # 47 minutes left: under 20% of 4 hours
    await care.advance(seconds=0)
    case = await care.get(case["id"])
    assert case["sla"]["warnings"] == ["first_response"] and care.events("care.sla.breached") == []
    assert [h for h in case["history"] if h["kind"] == "sla_warning"][0]["metric"] == "first_response"

    care.clock.set(datetime(2026, 4, 7, 12, 0, tzinfo=BERLIN))
    await care.advance(seconds=0)
    [breach] = care.events("care.sla.breached")
    assert breach["metric"] == "first_response" and breach["target_seconds"] == 4 * 3600
    assert breach["due_at"] == "2026-04-07T10:00:00Z" and breach["assignee_id"] == "ann"
    case = await care.get(case["id"])
    assert case["escalated"] and case["queue"] == "team-lead" and case["assignee_id"] == "lena"
    assert case["priority"] >= start_priority + 20
    escalation = next(f for f in case["priority_factors"] if f["name"] == "escalation")
    assert escalation["points"] == 20
    assigned = care.events("care.case.assigned")[-1]
    assert (assigned["assignee_id"], assigned["previous_assignee_id"], assigned["rule"], assigned["queue"]) == (
        "lena", "ann", "sla_escalation", "team-lead")

    await care.advance(hours=1)  # a breach is published once
    assert len(care.events("care.sla.breached")) == 1


async def test_a_reply_in_time_stops_the_first_response_clock(care):
    await care.publish(attributed("cus-s2"))
    [case] = await care.until(lambda: care.cases(customer_id="cus-s2"))
    care.clock.advance(hours=1)
    await care.client.post(f"/care/v1/cases/{case.id}/responses", headers=AGENT, json={"text": "on it"})
    await care.advance(hours=5)
    case = await care.get(case.id)
    assert case["sla"]["running"] == ["resolution"] and case["sla"]["breaches"] == []
    assert care.events("care.sla.breached") == []


async def test_a_follow_up_starts_the_next_response_clock_and_its_breach_escalates(care):
    await care.publish(attributed("cus-s3", conversation_id="conv-s3"))
    [case] = await care.until(lambda: care.cases(customer_id="cus-s3"))
    await care.client.post(f"/care/v1/cases/{case.id}/responses", headers=AGENT, json={"text": "looking"})
    care.clock.advance(minutes=10)
    await care.publish(attributed("cus-s3", "and?", intents=(), conversation_id="conv-s3"))
    await care.until(lambda: "next_response" in care.cases(customer_id="cus-s3")[0].sla_clock)
    detail = await care.get(case.id)
    # 8 business hours from Monday 10:10 -> Tuesday 10:10
    assert detail["sla"]["next_response_due"] == "2026-03-03T10:10:00Z"
    await care.advance(days=1)
    detail = await care.get(case.id)
    assert "next_response" in detail["sla"]["breaches"] and detail["escalated"]
    assert detail["queue"] == "leads"
    [breach] = care.events("care.sla.breached")
    assert (breach["metric"], breach["due_at"], breach["target_seconds"]) == \
        ("next_response", "2026-03-03T10:10:00Z", 8 * 3600)


async def test_resolution_breach_is_published(care):
    await care.put("/sla-policies/quick", {"first_response_s": 600, "next_response_s": 600, "resolution_s": 1200})
    response = await care.client.post("/care/v1/cases", headers=AGENT, json={
        "customer_id": "cus-s4", "channel": "phone", "sla_policy": "quick"})
    case = response.json()
    await care.client.post(f"/care/v1/cases/{case['id']}/responses", headers=AGENT, json={"text": "hi"})
    await care.advance(minutes=21)
    [breach] = care.events("care.sla.breached")
    assert (breach["metric"], breach["sla_policy"], breach["target_seconds"]) == ("resolution", "quick", 1200)


async def test_nothing_breaches_over_the_weekend(care):
    care.clock.set(datetime(2026, 3, 6, 16, 30, tzinfo=UTC))  # Friday 16:30
    await care.publish(attributed("cus-s5"))
    [case] = await care.until(lambda: care.cases(customer_id="cus-s5"))
    await care.advance(days=2, hours=16)  # Monday 08:30
    case = await care.get(case.id)
    assert case["sla"]["breaches"] == [] and case["sla"]["warnings"] == []
    assert case["sla"]["first_response_due"] == "2026-03-09T12:30:00Z"


async def test_bad_calendars_and_policies_are_refused(care):
    bad_zone = await care.client.put("/care/v1/calendars/x", headers={"Authorization": "Bearer test-lead-key"},
                                     json={"timezone": "Mars/Olympus"})
    assert bad_zone.status_code == 422 and bad_zone.json()["errors"][0]["field"] == "timezone"
    bad_hours = await care.client.put("/care/v1/calendars/x", headers={"Authorization": "Bearer test-lead-key"},
                                      json={"hours": {"mon": [["17:00", "09:00"]]}})
    assert bad_hours.status_code == 422 and bad_hours.json()["errors"][0]["field"].startswith("hours")
    bad_country = await care.client.put("/care/v1/calendars/x", headers={"Authorization": "Bearer test-lead-key"},
                                        json={"holiday_country": "QQ"})
    assert bad_country.status_code == 422
    no_calendar = await care.client.put("/care/v1/sla-policies/p", headers={"Authorization": "Bearer test-lead-key"},
                                        json={"first_response_s": 1, "next_response_s": 1, "resolution_s": 1,
                                              "calendar": "nope"})
    assert no_calendar.status_code == 422 and no_calendar.json()["errors"][0]["field"] == "calendar"
