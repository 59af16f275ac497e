"""Queues and assignment: which queue a case belongs to, and which agent takes it.

- A case goes to the most specific queue whose channels, languages and skills (case
  topics) all admit it; ``general`` when none does.
- An agent can take a case of a queue when active, a member of the queue, speaking the
  case's language (when both say), skilled in the case's topic (when the queue lists
  skills) and below capacity (open cases assigned to them).
- Policies: ``round_robin`` (the next member after the last one assigned) and
  ``least_loaded`` (fewest open cases; the longest idle on a tie).
- The round-robin pointer is kept per queue name in ``care_round_robin`` (queues without
  a configuration row rotate too) and moves on every assignment to an agent in the queue,
  whatever the rule (policy, escalation, advocate fallback, by hand, back to the last agent).
- Capacity freed by a resolve, a reassignment or an escalation goes to the waiting cases
  of the freed agent's queues (:func:`free`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, col, select

from socialzone_common.events.care import CaseAssigned
from socialzone_care.common import activity, cached, emit
from socialzone_care.models import OPEN_STATUSES, Agent, Case, Queue, RoundRobin

DEFAULT_QUEUE = "general"
DEFAULT_ESCALATION_QUEUE = "leads"


def _lang(value: str | None) -> str | None:
    return value.split("-")[0].lower() if value else None


def queues(session: Session) -> dict[str, Queue]:
    def load():
        rows = list(session.exec(select(Queue).order_by(Queue.name)))
        for row in rows:
            session.expunge(row)
        return {row.name: row for row in rows}
    return cached(session, "queues", "", load)


def members(session: Session, queue_name: str) -> list[str]:
    """Ids of the active agents of a queue (cached: most queues change rarely)."""
    def load():
        return [a.id for a in session.exec(select(Agent).where(Agent.active == True).order_by(Agent.id))  # noqa: E712
                if queue_name in a.queues]
    return cached(session, "members", queue_name, load)


def queue_for(session: Session, *, channel: str, language: str | None, topic: str) -> str:
    best, best_score = DEFAULT_QUEUE, -1
    lang = _lang(language)
    for queue in queues(session).values():
        if queue.channels and channel not in queue.channels:
            continue
        if queue.languages and lang not in {_lang(x) for x in queue.languages}:
            continue
        if queue.skills and topic not in queue.skills:
            continue
        score = bool(queue.channels) + bool(queue.languages) + bool(queue.skills)
        if score > best_score:
            best, best_score = queue.name, score
    return best


def load(session: Session, agent_id: str) -> int:
    return session.exec(select(func.count()).select_from(Case).where(
        Case.assignee_id == agent_id, col(Case.status).in_(OPEN_STATUSES))).one()


def can_take(session: Session, agent: Agent, case: Case, queue: Queue | None) -> bool:
    if queue is not None and queue.name not in agent.queues:
        return False
    return can_take_loaded(agent, case, queue, load(session, agent.id))


def pick_agent(session: Session, queue_name: str, case: Case) -> Agent | None:
    ids = members(session, queue_name)
    if not ids:
        return None
    queue = session.get(Queue, queue_name)
    policy = queue.policy if queue else "round_robin"
    agents = [a for a in session.exec(select(Agent).where(col(Agent.id).in_(ids), Agent.active == True)  # noqa: E712
                                        .order_by(Agent.id)) if queue_name in a.queues]
    if not agents:
        return None
    loads = {a.id: load(session, a.id) for a in agents}
    eligible = [a for a in agents if can_take_loaded(a, case, queue, loads[a.id])]
    if not eligible:
        return None
    if policy == "least_loaded":
        return min(eligible, key=lambda a: (loads[a.id], a.last_assigned_at is not None,
                                            a.last_assigned_at or datetime.min, a.id))
    last = last_agent(session, queue_name)
    after = [a for a in eligible if last is None or a.id > last]
    return (after or eligible)[0]


def last_agent(session: Session, queue_name: str) -> str | None:
    """The queue's round-robin pointer (None: start with the first member)."""
    row = session.get(RoundRobin, queue_name)
    return row.last_agent_id if row is not None else None


def advance(session: Session, queue_name: str, agent_id: str) -> None:
    row = session.get(RoundRobin, queue_name)
    if row is None:
        row = RoundRobin(queue=queue_name)
    row.last_agent_id = agent_id
    session.add(row)


def can_take_loaded(agent: Agent, case: Case, queue: Queue | None, current_load: int) -> bool:
    if not agent.active or current_load >= agent.capacity:
        return False
    if case.language and agent.languages and _lang(case.language) not in {_lang(x) for x in agent.languages}:
        return False
    if queue is not None and queue.skills and case.topic not in agent.skills and "*" not in agent.skills:
        return False
    return True


def assign(session: Session, case: Case, *, assignee_id: str | None, kind: str = "agent", rule: str | None,
           now: datetime, queue: str | None = None) -> None:
    """Give the case to someone (or, with None, back to its queue), publishing care.case.assigned."""
    previous = case.assignee_id
    if queue is not None:
        case.queue = queue
    case.assignee_id, case.assignee_kind = assignee_id, (kind if assignee_id else None)
    case.updated_at = now
    if assignee_id is None:
        if case.status == "assigned":
            case.status = "open"
        activity(session, case, "queued", now, queue=case.queue, rule=rule)
        return
    if case.status == "open":
        case.status = "assigned"
    if kind == "agent":
        case.last_agent_id = assignee_id
        agent = session.get(Agent, assignee_id)
        if agent is not None:
            agent.last_assigned_at = now
            session.add(agent)
        # every assignment moves the pointer (an escalation or a fallback too), so the
        # next round-robin pick is the member after this one
        advance(session, case.queue, assignee_id)
    session.add(case)
    activity(session, case, "assigned", now, assignee_id=assignee_id, assignee_kind=kind, queue=case.queue,
             rule=rule, previous_assignee_id=previous)
    emit(session, CaseAssigned(case_id=case.id, customer_id=case.customer_id, queue=case.queue,
                               assignee_id=assignee_id, assignee_kind=kind, previous_assignee_id=previous,
                               rule=rule))


def route(session: Session, case: Case, *, now: datetime, prefer_last_agent: bool = False,
          queue: str | None = None, rule: str | None = None) -> str | None:
    """Assign by the queue's policy (or back to the last agent); None when nobody is free."""
    target_queue = queue or case.queue
    if prefer_last_agent and case.last_agent_id:
        agent = session.get(Agent, case.last_agent_id)
        if agent is not None and can_take(session, agent, case, None):
            assign(session, case, assignee_id=agent.id, rule="last_agent", now=now, queue=target_queue)
            return agent.id
    q = queues(session).get(target_queue)
    agent = pick_agent(session, target_queue, case)
    if agent is None:
        if case.assignee_id is not None or target_queue != case.queue:
            assign(session, case, assignee_id=None, rule=rule, now=now, queue=target_queue)
        return None
    assign(session, case, assignee_id=agent.id, rule=rule or (q.policy if q else "round_robin"), now=now,
           queue=target_queue)
    return agent.id


def free(session: Session, agent_id: str | None, *, now: datetime) -> int:
    """An agent has room again (a case resolved, moved to someone else or escalated away):
    the waiting cases of their queues get it, as when a new agent arrives."""
    if agent_id is None:
        return 0
    agent = session.get(Agent, agent_id)
    session.flush()  # the freed case no longer counts in the agent's load
    if agent is None:
        return 0
    return drain(session, list(agent.queues), now=now, limit=agent.capacity)


def drain(session: Session, queues: list[str], *, now: datetime, limit: int = 100) -> int:
    """Give waiting cases of these queues, highest priority first, to agents who have room."""
    assigned = 0
    for name in queues:
        waiting = session.exec(select(Case).where(
            Case.queue == name, Case.assignee_id == None, col(Case.status).in_(OPEN_STATUSES),  # noqa: E711
            Case.erased == False).order_by(col(Case.priority).desc(), col(Case.number)).limit(limit)).all()  # noqa: E712
        for case in waiting:
            if route(session, case, now=now) is None:
                break
            assigned += 1
    return assigned
