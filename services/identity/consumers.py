"""Handlers of the events identity subscribes to (each runs inside the inbox transaction).

- ``identity-resolution`` (zone.interactions.raw): attribution and retraction.
- ``identity-timeline`` (zone.care, zone.marketing, zone.sales): the timeline projection.
  Identity's own events (zone.customers) are written to the timeline in the transaction
  that makes them, so they are visible at once and never doubled.
- ``identity-privacy`` (zone.privacy): each service's erasure completion.
"""

from __future__ import annotations

import logging

from sqlmodel import Session

from socialzone_common.catalog import parse_payload
from socialzone_common.envelope import Envelope
from socialzone_identity import privacy, resolution, timeline
from socialzone_identity.store import chase, chase_many

log = logging.getLogger(__name__)

RAW_TYPES = frozenset({"ingest.interaction.recorded", "ingest.interaction.retracted"})
COMPLETION_TYPES = frozenset({f"{s}.erasure.completed" for s in ("ingest", "care", "marketing", "sales", "insights")})


def resolution_handler(ctx: resolution.Context):
    def on_raw_interaction(session: Session, envelope: Envelope) -> None:
        if envelope.type == "ingest.interaction.recorded":
            resolution.attribute(session, envelope, ctx)
        elif envelope.type == "ingest.interaction.retracted":
            resolution.retract(session, envelope)

    return on_raw_interaction


def on_department_event(session: Session, envelope: Envelope) -> None:
    """Append a care, marketing or sales event to its customer's timeline."""
    if envelope.type not in timeline.PROJECTED_TYPES:
        return
    payload = parse_payload(envelope)  # a malformed event is retried, then dead-lettered
    customer_id = getattr(payload, "customer_id")
    found = chase(session, customer_id)
    if found is None or found[1] == "erased":
        log.info("%s %s names %s customer %s; not on any timeline", envelope.type, envelope.id,
                 "an erased" if found else "an unknown", customer_id)
        return
    timeline.add_event(session, envelope, customer_id=found[0], origin=customer_id)


def on_department_events(session: Session, envelopes: list[Envelope]) -> None:
    """:func:`on_department_event` for a polled batch (the worker's batch handler): the
    customers followed through merges in one query, the entries written in one statement.
    Each event is still validated: a malformed one fails the batch, which the worker then
    handles one event per transaction (retries, then the DLQ)."""
    projected = [(e, getattr(parse_payload(e), "customer_id")) for e in envelopes if e.type in timeline.PROJECTED_TYPES]
    if not projected:
        return
    found = chase_many(session, {customer_id for _e, customer_id in projected})
    rows = []
    for envelope, customer_id in projected:
        target = found.get(customer_id)
        if target is None or target[1] == "erased":
            log.info("%s %s names %s customer %s; not on any timeline", envelope.type, envelope.id,
                     "an erased" if target else "an unknown", customer_id)
            continue
        rows.append(timeline.event_row(envelope, customer_id=target[0], origin=customer_id))
    timeline.add_rows(session, rows)


def on_privacy_event(session: Session, envelope: Envelope) -> None:
    if envelope.type in COMPLETION_TYPES or envelope.type.endswith(".erasure.completed"):
        parse_payload(envelope)
        privacy.erasure_completed(session, envelope)
