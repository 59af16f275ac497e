"""The timeline: a projection of every zone event that has a customer.

Interactions are written by the resolution in the transaction that attributes them;
identity's own changes (creation, merges, unmerges, consents) in the transaction that
makes them; care, marketing and sales events by the projection consumer. Entries are
read newest first with keyset pagination on ``(occurred_at, id)``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, or_, select
from sqlmodel import Session

from socialzone_common import db
from socialzone_common.envelope import Envelope
from socialzone_common.errors import Unprocessable
from socialzone_common.pagination import decode_cursor, encode_cursor
from socialzone_identity.models import TimelineEntry

T = TimelineEntry.__table__
DEPARTMENTS = ("interactions", "identity", "care", "marketing", "sales", "insights")
# Department events the projection records (campaigns and alerts have no customer).
PROJECTED_TYPES = frozenset({
    "care.case.opened", "care.case.assigned", "care.case.responded", "care.case.resolved", "care.case.reopened",
    "care.sla.breached", "care.csat.recorded",
    "marketing.advocate.tier_changed", "marketing.advocate.flagged", "marketing.reward.granted",
    "sales.lead.created", "sales.lead.stage_changed", "sales.deal.won", "sales.deal.lost",
})


def department_of(event_type: str) -> str:
    if event_type.startswith("identity.interaction.") or event_type.startswith("ingest."):
        return "interactions"
    return event_type.split(".", 1)[0]


def _short(text: str | None, width: int = 120) -> str:
    if not text:
        return ""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


_LINES = {
    "identity.customer.created": lambda d: "customer created" + (" from interaction" if d.get("interaction_id") else " by an agent"),
    "identity.customer.merged": lambda d: f"merged {d.get('merged_id')} into {d.get('survivor_id')} ({d.get('rule')})",
    "identity.customer.unmerged": lambda d: f"unmerged {d.get('restored_customer_id')} from {d.get('customer_id')}"
                                            f" ({len(d.get('identifiers_moved') or ())} identifiers)",
    "identity.consent.changed": lambda d: f"consent {d.get('purpose')} {'granted' if d.get('granted') else 'withdrawn'}"
                                          f" via {d.get('source')}",
    "care.case.opened": lambda d: f"case {d.get('case_id')} opened ({d.get('priority')}, queue {d.get('queue')})",
    "care.case.assigned": lambda d: f"case {d.get('case_id')} assigned to {d.get('assignee_kind')} {d.get('assignee_id')}",
    "care.case.responded": lambda d: f"case {d.get('case_id')}: {'public' if d.get('public') else 'private'} response on {d.get('channel')}",
    "care.case.resolved": lambda d: f"case {d.get('case_id')} resolved: {d.get('resolution')}",
    "care.case.reopened": lambda d: f"case {d.get('case_id')} reopened by {d.get('reopened_by')}",
    "care.sla.breached": lambda d: f"case {d.get('case_id')} missed its {d.get('metric')} SLA ({d.get('sla_policy')})",
    "care.csat.recorded": lambda d: f"CSAT {d.get('score')}/5 for case {d.get('case_id')}",
    "marketing.advocate.tier_changed": lambda d: f"advocate tier {d.get('previous_tier')} → {d.get('tier')}",
    "marketing.advocate.flagged": lambda d: f"advocate flagged: {d.get('reason')}",
    "marketing.reward.granted": lambda d: f"{d.get('points')} points granted: {d.get('reason')}",
    "sales.lead.created": lambda d: f"lead {d.get('lead_id')} created from {d.get('source')} (score {d.get('score')})",
    "sales.lead.stage_changed": lambda d: f"lead {d.get('lead_id')}: {d.get('from_stage')} → {d.get('to_stage')}",
    "sales.deal.won": lambda d: f"deal {d.get('deal_id')} won: {d.get('amount')} {d.get('currency')}",
    "sales.deal.lost": lambda d: f"deal {d.get('deal_id')} lost: {d.get('reason')}",
}


def summarize(event_type: str, data: dict[str, Any]) -> str:
    """A one-line summary of an event for the timeline."""
    d = data
    if event_type == "identity.interaction.attributed":
        i = d.get("interaction", {})
        tx = i.get("transaction")
        if tx:
            amount = f" {tx.get('amount')} {tx.get('currency') or ''}".rstrip() if tx.get("amount") else ""
            return f"{tx.get('type')} via {i.get('source')}{amount}"
        text = _short(i.get("text"), 100)
        return f"{i.get('kind')} on {i.get('source')}" + (f": {text}" if text else "")
    line = _LINES.get(event_type)
    return _short(line(d) if line else event_type, 300)


def ref_of(event_type: str, data: dict[str, Any]) -> str | None:
    return data.get("case_id") or data.get("lead_id") or data.get("deal_id") or data.get("reward_id")


def interaction_row(*, customer_id: str, origin: str, via: int | None, envelope_id: str,
                    data: dict[str, Any], interaction: dict[str, Any], occurred_at: datetime) -> dict[str, Any]:
    """The row of an attributed interaction (``data``: the attributed event's payload)."""
    enrichment = interaction.get("enrichment") or {}
    sentiment = (enrichment.get("sentiment") or {}).get("score")
    tx = interaction.get("transaction") or {}
    amount = tx.get("amount")
    if amount is not None:
        amount = Decimal(str(amount))
        if tx.get("type") == "refund":
            amount = -abs(amount)
        elif tx.get("type") != "order":
            amount = None
    return dict(
        customer_id=customer_id, origin_customer_id=origin, via_identifier_id=via, event_id=envelope_id,
        event_type="identity.interaction.attributed", department="interactions", occurred_at=occurred_at,
        summary=summarize("identity.interaction.attributed", data), channel=interaction.get("source"),
        interaction_id=interaction.get("interaction_id"), ref_id=None, sentiment=sentiment,
        language=enrichment.get("language") or interaction.get("language"),
        amount=amount, currency=tx.get("currency") if amount is not None else None, retracted=False, event=data,
    )


def add_rows(session: Session, rows: list[dict[str, Any]]) -> None:
    """Multi-row statements at the driver (``db.insert_mappings``), not an executemany."""
    db.insert_mappings(session.connection(), T, rows)


def event_row(envelope: Envelope, *, customer_id: str, origin: str | None = None,
              via: int | None = None) -> dict[str, Any]:
    """The row of an identity or department event on ``customer_id``'s timeline."""
    data = envelope.data
    amount = data.get("amount") if envelope.type == "sales.deal.won" else None
    return dict(
        customer_id=customer_id, origin_customer_id=origin or customer_id, via_identifier_id=via,
        event_id=envelope.id, event_type=envelope.type, department=department_of(envelope.type),
        occurred_at=envelope.time, summary=summarize(envelope.type, data), channel=data.get("channel"),
        interaction_id=data.get("interaction_id"), ref_id=ref_of(envelope.type, data), sentiment=None,
        language=None, amount=Decimal(str(amount)) if amount is not None else None,
        currency=data.get("currency") if amount is not None else None, retracted=False, event=data,
    )


def add_event(session: Session, envelope: Envelope, *, customer_id: str, origin: str | None = None,
              via: int | None = None) -> None:
    """Record an identity or department event on ``customer_id``'s timeline."""
    add_rows(session, [event_row(envelope, customer_id=customer_id, origin=origin, via=via)])


def parse_types(types: str | None) -> list[str]:
    return [t.strip() for t in (types or "").split(",") if t.strip()]


def query_page(session: Session, *, customer_id: str, types: list[str], department: str | None,
               since: datetime | None, until: datetime | None, cursor: str | None, limit: int,
               after_id: int | None = None, include_event: bool = False) -> tuple[list[Any], str | None]:
    """One page newest first; ``types`` may end in ``*`` (``care.*``)."""
    if department is not None and department not in DEPARTMENTS:
        raise Unprocessable(f"department: must be one of {', '.join(DEPARTMENTS)}",
                            errors=[{"field": "department", "message": f"unknown department {department!r}"}])
    conditions = [T.c.customer_id == customer_id]
    if types:
        alternatives = []
        for t in types:
            alternatives.append(T.c.event_type.like(t[:-1] + "%") if t.endswith("*") else T.c.event_type == t)
        conditions.append(or_(*alternatives))
    if department:
        conditions.append(T.c.department == department)
    if since:
        conditions.append(T.c.occurred_at >= since)
    if until:
        conditions.append(T.c.occurred_at < until)
    if after_id is not None:
        conditions.append(T.c.id > after_id)
    position = decode_cursor(cursor, expect={"t": str, "i": int})
    if position is not None:
        try:
            at = datetime.fromisoformat(position["t"])
        except ValueError:
            raise Unprocessable("cursor: not a cursor returned by this API",
                                errors=[{"field": "cursor", "message": "not a cursor returned by this API"}]) from None
        conditions.append(or_(T.c.occurred_at < at, and_(T.c.occurred_at == at, T.c.id < position["i"])))
    columns = [T.c.id, T.c.event_id, T.c.event_type, T.c.department, T.c.occurred_at, T.c.summary, T.c.channel,
               T.c.interaction_id, T.c.retracted, T.c.origin_customer_id]
    if include_event:
        columns.append(T.c.event)
    statement = (select(*columns).where(*conditions).order_by(T.c.occurred_at.desc(), T.c.id.desc()).limit(limit + 1))
    rows = session.connection().execute(statement).all()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = encode_cursor({"t": _aware(last.occurred_at).isoformat(), "i": last.id})
    return rows, next_cursor


def _aware(value: datetime) -> datetime:
    from datetime import timezone

    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
