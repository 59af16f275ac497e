"""Crisis mode: during an active crisis on a case's topic, public replies wait for a lead."""

from __future__ import annotations

from datetime import datetime, timezone

from socialzone_common.events.common import TimeWindow
from socialzone_common.events.insights import AlertRaised, AlertResolved

from tests.care.conftest import AGENT, LEAD, attributed

NOW = datetime.now(timezone.utc)
RAISED = AlertRaised(alert_id="al-1", kind="crisis", topic="hashtag:acmefail", severity="critical",
                     metric="negative_share", observed=0.7, expected=0.1, window=TimeWindow(start=NOW, end=NOW))


async def test_public_replies_wait_for_a_leads_approval_during_a_crisis(care):
    await care.publish(attributed("cus-c1", "#acmefail again", hashtags=("#AcmeFail",)))
    [case] = await care.until(lambda: care.cases(customer_id="cus-c1"))
    await care.publish(RAISED)
    await care.until(lambda: care.cases(customer_id="cus-c1")[0].priority > case.priority)

    held = await care.client.post(f"/care/v1/cases/{case.id}/responses", headers=AGENT,
                                  json={"text": "We are on it!", "public": True})
    assert held.status_code == 201 and held.json()["state"] == "pending_approval"
    assert care.events("care.case.responded") == []
    detail = await care.get(case.id)
    assert detail["crisis_topics"] == ["hashtag:acmefail"] and detail["status"] == "open"

    private = await care.client.post(f"/care/v1/cases/{case.id}/responses", headers=AGENT,
                                     json={"text": "DM: details?", "public": False})
    assert private.json()["state"] == "sent"

    not_a_lead = await care.client.post(f"/care/v1/cases/{case.id}/responses/{held.json()['id']}/approve",
                                        headers=AGENT)
    assert not_a_lead.status_code == 403
    approved = await care.client.post(f"/care/v1/cases/{case.id}/responses/{held.json()['id']}/approve",
                                      headers=LEAD)
    assert approved.status_code == 200 and approved.json() | {"created_at": None} == approved.json() | {
        "created_at": None, "state": "sent", "approved_by": "lead-lena"}
    public = [e for e in care.events("care.case.responded") if e["public"]]
    assert len(public) == 1 and public[0]["response_id"] == held.json()["id"]
    twice = await care.client.post(f"/care/v1/cases/{case.id}/responses/{held.json()['id']}/approve",
                                   headers=LEAD)
    assert twice.status_code == 409


async def test_a_rejected_reply_is_never_sent_and_replies_flow_again_after_the_crisis(care):
    await care.publish(attributed("cus-c2", "#acmefail", hashtags=("acmefail",)), RAISED)
    [case] = await care.until(lambda: care.cases(customer_id="cus-c2"))
    await care.until(lambda: care.runtime.workers[2].state.handled >= 1)
    held = (await care.client.post(f"/care/v1/cases/{case.id}/responses", headers=AGENT,
                                   json={"text": "lol", "public": True})).json()
    rejected = await care.client.post(f"/care/v1/cases/{case.id}/responses/{held['id']}/reject", headers=LEAD)
    assert rejected.json()["state"] == "rejected"
    assert care.events("care.case.responded") == []
    await care.publish(AlertResolved(alert_id="al-1", kind="crisis", topic="hashtag:acmefail",
                                     resolved_by="recovered", raised_at=NOW))
    await care.until(lambda: care.runtime.workers[2].state.handled >= 2)
    sent = await care.client.post(f"/care/v1/cases/{case.id}/responses", headers=AGENT,
                                  json={"text": "Fixed now.", "public": True})
    assert sent.json()["state"] == "sent" and len(care.events("care.case.responded")) == 1


async def test_cases_on_other_topics_reply_freely_during_a_crisis(care):
    await care.publish(RAISED, attributed("cus-c3", "my invoice", keywords=("invoice",)))
    [case] = await care.until(lambda: care.cases(customer_id="cus-c3"))
    await care.until(lambda: care.runtime.workers[2].state.handled >= 1)
    sent = await care.client.post(f"/care/v1/cases/{case.id}/responses", headers=AGENT,
                                  json={"text": "Refunded.", "public": True})
    assert sent.json()["state"] == "sent"
