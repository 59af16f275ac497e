"""SLA policies on business-hours calendars, the SLA clock, escalation, and the
priority refresh that depends on them.

A case runs up to three clocks (metrics): ``first_response`` (until the first reply),
``next_response`` (from a customer's follow-up until the next reply) and
``resolution`` (until resolved). Each stores its start, due time, the moment to warn
(``sla_warning_fraction`` of the target left, in business time) and its target in
``Case.sla_clock``; ``Case.sla_next_check`` says when the clock must look again.
At a breach: ``care.sla.breached`` (any of the three metrics) and an escalation: the
escalation factor raises the priority and the case moves to the team lead's queue.
The warning is kept on the case and in its history (the catalog has no warning event).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import String, cast
from sqlmodel import Session, col, select

from socialzone_common import db
from socialzone_common.events.care import SlaBreached
from socialzone_care import priority as scoring
from socialzone_care import routing
from socialzone_care.calendars import DAYS, BusinessCalendar
from socialzone_care.common import activity, cached, emit
from socialzone_care.common import invalidate as invalidate_config
from socialzone_care.models import OPEN_STATUSES, Calendar, Case, Crisis, CustomerFacts, Lead, Queue, SlaPolicy

METRICS = ("first_response", "next_response", "resolution")
DEFAULT_CALENDAR = Calendar(name="default", timezone="UTC",
                            hours={d: [["09:00", "17:00"]] for d in DAYS[:5]})
DEFAULT_POLICIES = {
    "standard": SlaPolicy(name="standard", first_response_s=4 * 3600, next_response_s=8 * 3600,
                          resolution_s=24 * 3600, calendar="default"),
    "vip": SlaPolicy(name="vip", first_response_s=3600, next_response_s=2 * 3600,
                     resolution_s=8 * 3600, calendar="default"),
}
CLOSED_STAGES = ("won", "lost")

def invalidate() -> None:
    """Forget cached configuration (after a change through the API)."""
    invalidate_config()


def _cached(session: Session, kind: str, name: str, load):
    return cached(session, kind, name, load)


def calendar(session: Session, name: str) -> BusinessCalendar:
    def load():
        row = session.get(Calendar, name)
        if row is None:
            row = DEFAULT_CALENDAR
        return BusinessCalendar.from_row(row)
    return _cached(session, "calendar", name, load)


def policy(session: Session, name: str) -> SlaPolicy | None:
    def load():
        row = session.get(SlaPolicy, name)
        if row is not None:
            session.expunge(row)
            return row
        return DEFAULT_POLICIES.get(name)
    return _cached(session, "policy", name, load)


def policy_exists(session: Session, name: str) -> bool:
    return policy(session, name) is not None


def _target(pol: SlaPolicy, metric: str) -> int:
    return {"first_response": pol.first_response_s, "next_response": pol.next_response_s,
            "resolution": pol.resolution_s}[metric]


def start(session: Session, case: Case, metric: str, *, now: datetime, warning_fraction: float) -> None:
    pol = policy(session, case.sla_policy) or DEFAULT_POLICIES["standard"]
    cal = calendar(session, pol.calendar)
    target = _target(pol, metric)
    due, half_at, warn_at = cal.add_many(now, (target, target * 0.5, target * (1 - warning_fraction)))
    entry = {"start": now.isoformat(), "due": due.isoformat(), "target_s": target,
             "half_at": half_at.isoformat(), "warn_at": warn_at.isoformat()}
    case.sla_clock = {**case.sla_clock, metric: entry}
    setattr(case, f"{metric}_due", due)
    case.sla_warnings = [m for m in case.sla_warnings if m != metric]
    case.sla_breaches = [m for m in case.sla_breaches if m != metric]
    schedule(case, now)


def stop(case: Case, metric: str, *, now: datetime) -> None:
    if metric in case.sla_clock:
        case.sla_clock = {k: v for k, v in case.sla_clock.items() if k != metric}
    schedule(case, now)


def stop_all(case: Case) -> None:
    case.sla_clock = {}
    case.sla_next_check = None


def schedule(case: Case, now: datetime) -> None:
    """When the clock must look at the case next: the earliest pending checkpoint (a warning
    or breach not yet handled, the half-way mark of a target, an advocate offer's expiry)."""
    pending: list[datetime] = []
    for metric, entry in case.sla_clock.items():
        if metric in case.sla_breaches:
            continue
        pending.append(datetime.fromisoformat(entry["due"]))
        if metric not in case.sla_warnings:
            pending.append(datetime.fromisoformat(entry["warn_at"]))
        half = datetime.fromisoformat(entry["half_at"])
        if half > now:
            pending.append(half)
    if case.assignee_kind == "advocate" and case.advocate_offer_expires_at is not None:
        pending.append(case.advocate_offer_expires_at)
    case.sla_next_check = min(pending) if pending else None


def case_calendar(session: Session, case: Case) -> BusinessCalendar:
    pol = policy(session, case.sla_policy) or DEFAULT_POLICIES["standard"]
    return calendar(session, pol.calendar)


def advocate_offer_expiry(cal, case, *, now: datetime, offer_s: float, margin_s: float) -> datetime | None:
    """When an advocate's offer ends: ``offer_s`` from now at the latest, and while
    ``margin_s`` of *business* time is still left before the first response is due (the
    margin is business time like the target: on a Friday evening, 15 wall-clock minutes
    before a Monday due time would leave the agent no working time at all). None: too
    little time for an offer. Pure (the batch path calls it with its own calendar)."""
    expires = now + timedelta(seconds=offer_s)
    entry = case.sla_clock.get("first_response")
    if entry is not None:
        left = entry["target_s"] - margin_s
        if left <= 0:
            return None
        expires = min(expires, cal.add(datetime.fromisoformat(entry["start"]), left))
    return expires if expires > now else None


def used(session: Session, case: Case, now: datetime) -> tuple[float | None, str | None]:
    """The largest fraction of a running SLA target used, and its metric."""
    pol = policy(session, case.sla_policy) or DEFAULT_POLICIES["standard"]
    return used_on(calendar(session, pol.calendar), case, now)


def used_on(cal, case, now: datetime) -> tuple[float | None, str | None]:
    """:func:`used` on the case's calendar, already at hand (the batch path has it)."""
    best, best_metric = None, None
    for metric, entry in case.sla_clock.items():
        fraction = cal.between(datetime.fromisoformat(entry["start"]), now) / max(1, entry["target_s"])
        if metric in case.sla_breaches:
            fraction = max(fraction, 1.0)
        if best is None or fraction > best:
            best, best_metric = fraction, metric
    return best, best_metric


# --- priority ------------------------------------------------------------------------------

def open_deals(session: Session, customer_id: str) -> int:
    """Open leads and deals of a customer (remembered for the transaction; see forget_deals)."""
    from sqlalchemy import func

    memo = session.info.setdefault("care.open_deals", {})
    if customer_id not in memo:
        memo[customer_id] = session.exec(select(func.count()).select_from(Lead).where(
            Lead.customer_id == customer_id, col(Lead.stage).not_in(CLOSED_STAGES))).one()
    return memo[customer_id]


def forget_deals(session: Session) -> None:
    session.info.pop("care.open_deals", None)


def active_crises(session: Session, topics: list[str]) -> list[tuple[str, str]]:
    if not topics:
        return []
    active = cached(session, "crises", "active", lambda: {
        (r.topic, r.severity) for r in session.exec(select(Crisis).where(Crisis.active == True))})  # noqa: E712
    wanted = {t.lower() for t in topics}
    return sorted(c for c in active if c[0] in wanted)


def customer_facts(session: Session, customer_id: str) -> CustomerFacts | None:
    """The customer's replicated facts (a miss is remembered for the transaction too)."""
    memo = session.info.setdefault("care.facts_missing", set())
    if customer_id in memo:
        return None
    row = session.get(CustomerFacts, customer_id)
    if row is None:
        memo.add(customer_id)
    return row


def forget_facts(session: Session) -> None:
    session.info.pop("care.facts_missing", None)


def inputs_for(session: Session, case: Case, now: datetime) -> scoring.Inputs:
    facts = customer_facts(session, case.customer_id)
    sla_used, sla_metric = used(session, case, now) if case.status in OPEN_STATUSES else (None, None)
    return scoring.Inputs(
        intents=tuple(case.intents), sentiment_score=case.sentiment_score, followers=case.followers,
        lifetime_value=facts.lifetime_value if facts else 0.0,
        advocate_tier=facts.advocate_tier if facts else "none",
        open_deals=open_deals(session, case.customer_id),
        crisis=tuple(active_crises(session, case.tracked_topics)),
        sla_used=sla_used, sla_metric=sla_metric, escalated=case.escalated)


def refresh_priority(session: Session, case: Case, *, weights: dict[str, float], now: datetime,
                     reason: str) -> bool:
    """Recompute the case's priority from its factors; True if it changed."""
    value, name, factors = scoring.compute(inputs_for(session, case, now), weights)
    changed = value != case.priority
    if changed and case.number is not None:
        activity(session, case, "priority_changed", now, previous=case.priority, priority=value, reason=reason)
    case.priority, case.priority_label, case.priority_factors = value, name, factors
    case.updated_at = now if changed else case.updated_at
    return changed


def refresh_cases(session: Session, cases, *, weights, now: datetime, reason: str) -> int:
    return sum(refresh_priority(session, c, weights=weights, now=now, reason=reason) for c in cases)


def open_cases_of(session: Session, customer_id: str) -> list[Case]:
    return list(session.exec(select(Case).where(Case.customer_id == customer_id,
                                                col(Case.status).in_(OPEN_STATUSES))))


def open_cases_on_topic(session: Session, topic: str) -> list[Case]:
    needle = f'%"{topic.lower()}"%'
    return [c for c in session.exec(select(Case).where(col(Case.status).in_(OPEN_STATUSES),
                                                       cast(Case.tracked_topics, String).like(needle)))
            if topic.lower() in c.tracked_topics]


# --- the clock -----------------------------------------------------------------------------

def escalate(session: Session, case: Case, *, now: datetime, weights, reason: str) -> None:
    first_time = not case.escalated
    case.escalated = True
    refresh_priority(session, case, weights=weights, now=now, reason=reason)
    if not first_time:
        return
    queue = session.get(Queue, case.queue)
    target = (queue.escalation_queue if queue and queue.escalation_queue else routing.DEFAULT_ESCALATION_QUEUE)
    activity(session, case, "escalated", now, reason=reason, to_queue=target, from_queue=case.queue)
    previous = case.assignee_id if case.assignee_kind == "agent" else None
    routing.route(session, case, now=now, queue=target, rule="sla_escalation")
    if previous is not None and previous != case.assignee_id:
        routing.free(session, previous, now=now)  # the agent's room goes to their queues' waiting cases


def check(session: Session, case: Case, *, now: datetime, settings) -> list[str]:
    """Warn, breach, escalate and fall back, as due; returns what happened."""
    happened = []
    weights = settings.priority_weights
    for metric, entry in list(case.sla_clock.items()):
        due = datetime.fromisoformat(entry["due"])
        if metric not in case.sla_breaches and now >= due:
            case.sla_breaches = [*case.sla_breaches, metric]
            activity(session, case, "sla_breached", now, metric=metric, due_at=entry["due"],
                     target_s=entry["target_s"])
            happened.append(f"breached:{metric}")
            emit(session, SlaBreached(case_id=case.id, customer_id=case.customer_id, metric=metric,
                                      sla_policy=case.sla_policy, target_seconds=entry["target_s"],
                                      due_at=due, priority=case.priority_label, queue=case.queue,
                                      assignee_id=case.assignee_id))
            escalate(session, case, now=now, weights=weights, reason=f"{metric} SLA breached")
        elif (metric not in case.sla_breaches and metric not in case.sla_warnings
              and now >= datetime.fromisoformat(entry["warn_at"])):
            case.sla_warnings = [*case.sla_warnings, metric]
            activity(session, case, "sla_warning", now, metric=metric, due_at=entry["due"],
                     seconds_left_business=round(entry["target_s"] * settings.sla_warning_fraction))
            happened.append(f"warning:{metric}")
    if (case.assignee_kind == "advocate" and case.advocate_offer_expires_at is not None
            and now >= case.advocate_offer_expires_at and case.status in OPEN_STATUSES):
        activity(session, case, "advocate_fallback", now, advocate_id=case.assignee_id)
        case.advocate_offer_expires_at = None
        routing.route(session, case, now=now, rule="advocate_fallback")
        if case.assignee_kind == "advocate":  # no agent free: back in the queue, unassigned
            routing.assign(session, case, assignee_id=None, rule="advocate_fallback", now=now)
        happened.append("advocate_fallback")
    refresh_priority(session, case, weights=weights, now=now, reason="sla clock")
    schedule(case, now)
    session.add(case)
    return happened


def tick(session: Session, *, now: datetime, settings, limit: int = 500) -> dict[str, int]:
    """One pass of the SLA clock over the cases whose next checkpoint has come."""
    counts: dict[str, int] = {}
    statement = (select(Case).where(col(Case.sla_next_check) <= now, col(Case.status).in_(OPEN_STATUSES))
                 .order_by(col(Case.sla_next_check)).limit(limit))
    if session.get_bind().dialect.name == "postgresql":
        # replicas share the work: each pass locks the cases it checks, the others skip them
        statement = statement.with_for_update(skip_locked=True)
    else:
        db.begin_writing(session)  # SQLite: the writer turn, so no transition lands between read and write
    due = session.exec(statement).all()
    for case in due:
        for what in check(session, case, now=now, settings=settings):
            kind = what.split(":")[0]
            counts[kind] = counts.get(kind, 0) + 1
        counts["checked"] = counts.get("checked", 0) + 1
    return counts
