"""Customer care's REST API (mounted at /care/v1). Thin: parse, authorize, call a
domain function, commit, answer.

Scopes: ``care:read`` (look), ``care:write`` (agents: cases, responses, assignment),
``care:lead`` (team leads: crisis approvals, queues, agents, SLA policies, calendars,
rules, canned responses, advocate topics).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response
from sqlmodel import Session, col, select

from socialzone_common.deps import PrincipalDep, RuntimeDep, SessionDep, SettingsDep, require
from socialzone_common.errors import NotFound, Unprocessable
from socialzone_common.pagination import MAX_LIMIT, decode_cursor, encode_cursor
from socialzone_care import domain, identity_client, routing, sla
from socialzone_care.clock import clock_of
from socialzone_care.common import invalidate as invalidate_config
from socialzone_care.models import (
    OPEN_STATUSES, AdvocateTopic, AdvocateTopicIn, Agent, AgentIn, AssignRequest, Calendar, CalendarIn,
    CannedIn, CannedResponse, Case, CaseActivity, CaseCreate, CaseMessage, CsatCreate, OpeningRule, Queue,
    QueueIn, ReopenRequest, ResolveRequest, ResponseCreate, RuleIn, SlaPolicy, SlaPolicyIn,
)

router = APIRouter(tags=["care"])

READ, WRITE, LEAD = require("care:read"), require("care:write"), require("care:lead")


def _now(runtime: RuntimeDep) -> datetime:
    return clock_of(runtime).now()


NowDep = Annotated[datetime, Depends(_now)]
NAME = r"^[A-Za-z0-9_.:-]{1,64}$"


# --- representations ---------------------------------------------------------------------

def case_out(case: Case) -> dict:
    return {
        "id": case.id, "number": case.number, "customer_id": case.customer_id, "status": case.status,
        "topic": case.topic, "channel": case.channel, "language": case.language, "intents": case.intents,
        "public": case.public, "opened_from": case.opened_from, "interaction_id": case.interaction_id,
        "rule": case.rule, "subject": case.subject, "customer_name": case.customer_name,
        "customer_handle": case.customer_handle, "queue": case.queue, "assignee_id": case.assignee_id,
        "assignee_kind": case.assignee_kind, "last_agent_id": case.last_agent_id,
        "advocate_id": case.advocate_id, "advocate_offer_expires_at": case.advocate_offer_expires_at,
        "priority": case.priority, "priority_label": case.priority_label,
        "priority_factors": case.priority_factors,
        "sla": {"policy": case.sla_policy, "first_response_due": case.first_response_due,
                "next_response_due": case.next_response_due if "next_response" in case.sla_clock else None,
                "resolution_due": case.resolution_due, "running": sorted(case.sla_clock),
                "warnings": case.sla_warnings, "breaches": case.sla_breaches},
        "escalated": case.escalated, "responses": case.responses, "opened_at": case.opened_at,
        "updated_at": case.updated_at, "first_responded_at": case.first_responded_at,
        "resolved_at": case.resolved_at, "resolution": case.resolution, "resolver_id": case.resolver_id,
        "resolved_by_advocate": case.resolved_by_advocate, "reopen_count": case.reopen_count,
        "csat": None if case.csat_score is None else {"score": case.csat_score, "comment": case.csat_comment},
        "erased": case.erased,
    }


def message_out(m: CaseMessage) -> dict:
    return {"id": m.id, "kind": m.kind, "author_id": m.author_id, "author_kind": m.author_kind,
            "public": m.public, "state": m.state, "text": m.text, "interaction_id": m.interaction_id,
            "accepted": m.accepted, "approved_by": m.approved_by, "created_at": m.created_at}


def _row(model) -> dict:
    return model.model_dump()


# --- cases -------------------------------------------------------------------------------

@router.post("/cases", status_code=201, dependencies=[WRITE], summary="Open a case by hand")
def create_case(body: CaseCreate, session: SessionDep, settings: SettingsDep, now: NowDep,
                response: Response) -> dict:
    case = domain.open_manual_case(session, body=body, settings=settings, now=now)
    session.commit()
    response.headers["Location"] = f"/care/v1/cases/{case.id}"
    return case_out(case)


@router.get("/cases", dependencies=[READ], summary="Cases, highest priority first")
def list_cases(session: SessionDep,
               status: Literal["open", "assigned", "responded", "resolved", "active"] | None = None,
               queue: str | None = None, assignee: str | None = Query(default=None, description="an id, or none"),
               priority_min: int | None = Query(default=None, ge=1, le=100), topic: str | None = None,
               customer_id: str | None = None, cursor: str | None = None,
               limit: int = Query(default=50, ge=1, le=MAX_LIMIT)) -> dict:
    statement = select(Case)
    if status == "active":
        statement = statement.where(col(Case.status).in_(OPEN_STATUSES))
    elif status:
        statement = statement.where(Case.status == status)
    if queue:
        statement = statement.where(Case.queue == queue)
    if assignee == "none":
        statement = statement.where(col(Case.assignee_id).is_(None))
    elif assignee:
        statement = statement.where(Case.assignee_id == assignee)
    if priority_min is not None:
        statement = statement.where(Case.priority >= priority_min)
    if topic:
        statement = statement.where(Case.topic == topic)
    if customer_id:
        statement = statement.where(Case.customer_id == customer_id)
    position = decode_cursor(cursor, expect={"p": int, "n": int})
    if position:
        # An edited cursor may hold any 64-bit numbers; the columns are 32-bit on PostgreSQL.
        # Priorities are 1..100 and case numbers positive, so these bounds select the same rows.
        p, n = min(max(position["p"], 0), 101), min(max(position["n"], 0), 2**31 - 1)
        statement = statement.where((Case.priority < p) | ((Case.priority == p) & (col(Case.number) > n)))
    rows = session.exec(statement.order_by(col(Case.priority).desc(), col(Case.number)).limit(limit + 1)).all()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor({"p": rows[-1].priority, "n": rows[-1].number})
    return {"items": [case_out(c) for c in rows], "next_cursor": next_cursor}


def _detail(runtime, case_id: str) -> dict:
    with runtime.sessions() as session:
        case = domain.get_case(session, case_id)
        out = case_out(case)
        out["messages"] = [message_out(m) for m in session.exec(
            select(CaseMessage).where(CaseMessage.case_id == case.id).order_by(col(CaseMessage.created_at)))]
        out["history"] = [{"at": a.at, "kind": a.kind, **a.detail} for a in session.exec(
            select(CaseActivity).where(CaseActivity.case_id == case.id).order_by(col(CaseActivity.id)))]
        out["crisis_topics"] = domain.crisis_topics(session, case)
        return out


@router.get("/cases/{case_id}", dependencies=[READ],
            summary="A case with its priority factors, SLA, messages, history and the customer's summary")
async def read_case(case_id: str, runtime: RuntimeDep) -> dict:
    out = await asyncio.to_thread(_detail, runtime, case_id)
    if out["erased"]:
        out["customer"] = {"available": False, "reason": "the customer's data was erased"}
    else:
        out["customer"] = await identity_client.customer_view(runtime.settings, out["customer_id"],
                                                              client=runtime.http_client())
    return out


@router.post("/cases/{case_id}/assign", dependencies=[WRITE], summary="Assign to an agent, or let the queue choose")
def assign_case(case_id: str, body: AssignRequest, session: SessionDep, settings: SettingsDep, now: NowDep) -> dict:
    case = domain.assign_case(session, case_id=case_id, assignee_id=body.assignee_id, queue=body.queue,
                              settings=settings, now=now)
    session.commit()
    return case_out(case)


@router.post("/cases/{case_id}/responses", status_code=201, dependencies=[WRITE],
             summary="A reply to the customer (public or private), an internal note, or an advocate's answer")
def create_response(case_id: str, body: ResponseCreate, session: SessionDep, settings: SettingsDep, now: NowDep,
                    principal: PrincipalDep) -> dict:
    message = domain.respond(session, case_id=case_id, body=body, principal=principal.name, settings=settings,
                             now=now)
    session.commit()
    return message_out(message)


@router.post("/cases/{case_id}/responses/{response_id}/approve", dependencies=[LEAD],
             summary="Crisis mode: a lead approves a public reply, which is then sent")
def approve_response(case_id: str, response_id: str, session: SessionDep, settings: SettingsDep, now: NowDep,
                     principal: PrincipalDep) -> dict:
    message = domain.decide_approval(session, case_id=case_id, response_id=response_id, approve=True,
                                     lead=principal.name, settings=settings, now=now)
    session.commit()
    return message_out(message)


@router.post("/cases/{case_id}/responses/{response_id}/reject", dependencies=[LEAD],
             summary="Crisis mode: a lead rejects a public reply; it is never sent")
def reject_response(case_id: str, response_id: str, session: SessionDep, settings: SettingsDep, now: NowDep,
                    principal: PrincipalDep) -> dict:
    message = domain.decide_approval(session, case_id=case_id, response_id=response_id, approve=False,
                                     lead=principal.name, settings=settings, now=now)
    session.commit()
    return message_out(message)


@router.post("/cases/{case_id}/responses/{response_id}/accept", dependencies=[WRITE],
             summary="Accept an advocate's answer: resolves the case with resolved_by_advocate")
def accept_answer(case_id: str, response_id: str, session: SessionDep, settings: SettingsDep, now: NowDep) -> dict:
    case = domain.accept_answer(session, case_id=case_id, response_id=response_id, settings=settings, now=now)
    session.commit()
    return case_out(case)


@router.post("/cases/{case_id}/resolve", dependencies=[WRITE], summary="Resolve the case")
def resolve_case(case_id: str, body: ResolveRequest, session: SessionDep, settings: SettingsDep, now: NowDep,
                 principal: PrincipalDep) -> dict:
    case = domain.resolve(session, case_id=case_id, resolution=body.resolution,
                          resolver_id=body.resolver_id or principal.name, settings=settings, now=now)
    session.commit()
    return case_out(case)


@router.post("/cases/{case_id}/reopen", dependencies=[WRITE], summary="Reopen a resolved case (back to its last agent)")
def reopen_case(case_id: str, body: ReopenRequest, session: SessionDep, settings: SettingsDep, now: NowDep) -> dict:
    case = domain.reopen(session, case_id=case_id, by="agent", reason=body.reason, settings=settings, now=now)
    session.commit()
    return case_out(case)


@router.post("/cases/{case_id}/csat", status_code=201, dependencies=[WRITE],
             summary="Record the customer's satisfaction (1-5) with a resolved case")
def record_csat(case_id: str, body: CsatCreate, session: SessionDep, now: NowDep) -> dict:
    case = domain.record_csat(session, case_id=case_id, score=body.score, comment=body.comment,
                              channel=body.channel, now=now)
    session.commit()
    return case_out(case)


@router.get("/stats", dependencies=[READ], summary="Anonymous counts for KPIs (erased cases included)")
def read_stats(session: SessionDep) -> dict:
    return domain.stats(session)


# --- configuration (leads) -------------------------------------------------------------

def _put(session: Session, model, key: str, values: dict):
    row = session.get(model, key)
    if row is None:
        row = model(**{model.__table__.primary_key.columns.keys()[0]: key}, **values)
    else:
        for name, value in values.items():
            setattr(row, name, value)
    session.add(row)
    session.commit()
    session.refresh(row)
    invalidate_config()
    return row


def _get(session: Session, model, key: str, what: str):
    row = session.get(model, key)
    if row is None:
        raise NotFound(f"{what} {key!r} does not exist")
    return row


def _check_name(name: str, field: str) -> None:
    import re

    if not re.match(NAME, name):
        raise Unprocessable(f"{field}: letters, digits and _.:- only, at most 64",
                            errors=[{"field": field, "message": "invalid name"}])


@router.get("/queues", dependencies=[READ])
def list_queues(session: SessionDep) -> list[dict]:
    return [_row(q) for q in session.exec(select(Queue).order_by(Queue.name))]


@router.put("/queues/{name}", dependencies=[LEAD], summary="Create or change a queue")
def put_queue(name: str, body: QueueIn, session: SessionDep, now: NowDep) -> dict:
    _check_name(name, "name")
    row = _put(session, Queue, name, body.model_dump())
    routing.drain(session, [name], now=now)
    session.commit()
    return _row(row)


@router.get("/queues/{name}/cases", dependencies=[READ], summary="The queue's active cases in priority order")
def queue_cases(name: str, session: SessionDep, limit: int = Query(default=50, ge=1, le=MAX_LIMIT)) -> dict:
    rows = session.exec(select(Case).where(Case.queue == name, col(Case.status).in_(OPEN_STATUSES))
                        .order_by(col(Case.priority).desc(), col(Case.number)).limit(limit)).all()
    return {"queue": name, "items": [case_out(c) for c in rows]}


@router.get("/agents", dependencies=[READ])
def list_agents(session: SessionDep) -> list[dict]:
    return [{**_row(a), "load": routing.load(session, a.id)} for a in session.exec(select(Agent).order_by(Agent.id))]


@router.put("/agents/{agent_id}", dependencies=[LEAD], summary="Create or change an agent")
def put_agent(agent_id: str, body: AgentIn, session: SessionDep, now: NowDep) -> dict:
    _check_name(agent_id, "agent_id")
    row = _put(session, Agent, agent_id, body.model_dump())
    routing.drain(session, list(row.queues), now=now)
    session.commit()
    return {**_row(row), "load": routing.load(session, row.id)}


@router.get("/calendars/{name}", dependencies=[READ])
def get_calendar(name: str, session: SessionDep) -> dict:
    row = session.get(Calendar, name) or (sla.DEFAULT_CALENDAR if name == "default" else None)
    if row is None:
        raise NotFound(f"calendar {name!r} does not exist")
    return _row(row)


@router.put("/calendars/{name}", dependencies=[LEAD], summary="Business hours: time zone, hours, holidays")
def put_calendar(name: str, body: CalendarIn, session: SessionDep) -> dict:
    _check_name(name, "name")
    values = body.model_dump(mode="json")
    if body.holiday_country:
        import holidays

        try:
            holidays.country_holidays(body.holiday_country, subdiv=body.holiday_subdiv)
        except NotImplementedError as exc:
            raise Unprocessable(f"holiday_country: {exc}",
                                errors=[{"field": "holiday_country", "message": str(exc)}]) from None
    row = _put(session, Calendar, name, values)
    sla.invalidate()
    return _row(row)


@router.get("/sla-policies", dependencies=[READ])
def list_policies(session: SessionDep) -> list[dict]:
    rows = {p.name: _row(p) for p in session.exec(select(SlaPolicy))}
    for name, default in sla.DEFAULT_POLICIES.items():
        rows.setdefault(name, _row(default))
    return sorted(rows.values(), key=lambda r: r["name"])


@router.put("/sla-policies/{name}", dependencies=[LEAD], summary="SLA targets in business seconds")
def put_policy(name: str, body: SlaPolicyIn, session: SessionDep) -> dict:
    _check_name(name, "name")
    if body.calendar != "default" and session.get(Calendar, body.calendar) is None:
        raise Unprocessable(f"calendar: no calendar {body.calendar!r}",
                            errors=[{"field": "calendar", "message": "unknown calendar"}])
    row = _put(session, SlaPolicy, name, body.model_dump())
    sla.invalidate()
    return _row(row)


@router.get("/canned-responses", dependencies=[READ])
def list_canned(session: SessionDep) -> list[dict]:
    return [_row(c) for c in session.exec(select(CannedResponse).order_by(CannedResponse.name))]


@router.put("/canned-responses/{name}", dependencies=[LEAD],
            summary="A canned response; {customer_name}, {case_number}, {agent_name}, {topic} and custom variables")
def put_canned(name: str, body: CannedIn, session: SessionDep) -> dict:
    _check_name(name, "name")
    import string

    try:
        list(string.Formatter().parse(body.body))
    except ValueError as exc:
        raise Unprocessable(f"body: {exc}", errors=[{"field": "body", "message": str(exc)}]) from None
    return _row(_put(session, CannedResponse, name, body.model_dump()))


@router.get("/rules", dependencies=[READ], summary="The rules that open cases (the defaults until one is set)")
def list_rules(session: SessionDep) -> list[dict]:
    return [_row(r) for r in domain.rules(session)]


@router.put("/rules/{name}", dependencies=[LEAD], summary="Create or change a case-opening rule")
def put_rule(name: str, body: RuleIn, session: SessionDep) -> dict:
    _check_name(name, "name")
    if body.sla_policy and not sla.policy_exists(session, body.sla_policy):
        raise Unprocessable(f"sla_policy: unknown policy {body.sla_policy!r}",
                            errors=[{"field": "sla_policy", "message": "unknown SLA policy"}])
    return _row(_put(session, OpeningRule, name, body.model_dump()))


@router.delete("/rules/{name}", status_code=204, dependencies=[LEAD])
def delete_rule(name: str, session: SessionDep) -> Response:
    session.delete(_get(session, OpeningRule, name, "rule"))
    session.commit()
    invalidate_config()
    return Response(status_code=204)


@router.put("/advocates/{customer_id}/topics/{topic}", dependencies=[LEAD],
            summary="Record an advocate's accepted answers on a topic (first-tier support)")
def put_advocate_topic(customer_id: str, topic: str, body: AdvocateTopicIn, session: SessionDep) -> dict:
    _check_name(topic, "topic")
    row = session.exec(select(AdvocateTopic).where(AdvocateTopic.advocate_id == customer_id,
                                                   AdvocateTopic.topic == topic)).first()
    row = row or AdvocateTopic(advocate_id=customer_id, topic=topic)
    row.accepted_answers = body.accepted_answers
    session.add(row)
    session.commit()
    session.refresh(row)
    return _row(row)


@router.get("/advocates/{customer_id}/topics", dependencies=[READ])
def get_advocate_topics(customer_id: str, session: SessionDep) -> list[dict]:
    return [_row(r) for r in session.exec(select(AdvocateTopic).where(AdvocateTopic.advocate_id == customer_id))]
