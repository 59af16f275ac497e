"""Events ingest consumes (each handler runs inside its inbox transaction: no commit here).

- ``identity.interaction.attributed`` (zone.interactions): remember the customer an
  interaction was attributed to, so that an erasure request, which names customers,
  finds that customer's interactions here.
- ``identity.customer.merged`` (zone.customers): interactions of the merged customer now
  belong to the survivor.
- ``identity.customer.erasure_requested`` (zone.privacy): purge the personal data of the
  customer's interactions (and of the merged customers'), then answer
  ``ingest.erasure.completed`` through the outbox in the same transaction. The erased
  customer ids are remembered: an attribution that arrives after the erasure (the two
  topics are not ordered together) is purged as it arrives.
"""

from __future__ import annotations

from sqlmodel import Session, col, select

from socialzone_common import db, outbox
from socialzone_common.catalog import parse_payload
from socialzone_common.envelope import Envelope, now_utc
from socialzone_common.events.identity import CustomerMerged, InteractionAttributed
from socialzone_common.events.privacy import ErasureRequested, IngestErasureCompleted
from socialzone_common.worker import ConsumerSpec

from socialzone_ingest import domain
from socialzone_ingest.models import ErasedCustomer, InteractionRow

ATTRIBUTION_GROUP = "ingest-attribution"
PRIVACY_GROUP = "ingest-privacy"


def on_attribution(session: Session, envelope: Envelope) -> None:
    payload = parse_payload(envelope)
    if isinstance(payload, InteractionAttributed):
        domain.lock_customers(session, [payload.customer_id])
        domain.attribute(session, interaction_id=payload.interaction.interaction_id,
                         customer_id=payload.customer_id)
        if session.get(ErasedCustomer, payload.customer_id) is not None:
            # attributed after the customer was erased (the topics are not ordered together)
            domain.erase_customers(session, customer_ids=[payload.customer_id])
    elif isinstance(payload, CustomerMerged):
        domain.rekey_customer(session, merged_id=payload.merged_id, survivor_id=payload.survivor_id)




def on_attributions(session: Session, envelopes: list[Envelope]) -> None:
    """A polled batch of attributions in one transaction (the platform falls back to
    :func:`on_attribution` one event at a time if this raises): one ``UPDATE ... FROM
    (VALUES ...)`` for the attributions between two merges, one query for erased customers. Every interaction
    passes here, so the catalog's field names are read from the decoded data directly
    (a malformed event raises, and the one-at-a-time path validates and dead-letters it)."""
    pending: list[tuple[str, str]] = []  # (interaction id, customer id)
    connection = session.connection()
    mark = db.param_mark(connection.dialect)

    def flush() -> None:
        if pending:
            domain.lock_customers(session, {customer for _, customer in pending})
            # What domain.attribute does, for the whole run of attributions at once
            db.update_rows(connection, InteractionRow.__tablename__, "customer_id = v.column2", "id",
                           f"({mark}, {mark})", pending)
            erased = session.exec(select(ErasedCustomer.customer_id).where(
                col(ErasedCustomer.customer_id).in_({customer for _, customer in pending}))).all()
            if erased:
                domain.erase_customers(session, customer_ids=list(erased))
            pending.clear()

    for envelope in envelopes:
        if envelope.type == "identity.interaction.attributed":
            pending.append((envelope.data["interaction"]["interaction_id"], envelope.data["customer_id"]))
        elif envelope.type == "identity.customer.merged":
            flush()  # in order: an attribution to the merged customer is re-keyed below
            on_attribution(session, envelope)
    flush()


def on_erasure_requested(session: Session, envelope: Envelope) -> None:
    request = parse_payload(envelope)
    assert isinstance(request, ErasureRequested)
    customer_ids = [request.customer_id, *request.merged_ids]
    domain.lock_customers(session, customer_ids)
    purged = domain.erase_customers(session, customer_ids=customer_ids)
    for customer_id in dict.fromkeys(customer_ids):
        if session.get(ErasedCustomer, customer_id) is None:
            session.add(ErasedCustomer(customer_id=customer_id, erasure_id=request.erasure_id))
    outbox.enqueue(session, IngestErasureCompleted(
        erasure_id=request.erasure_id, customer_id=request.customer_id, completed_at=now_utc(),
        records_purged=purged).to_envelope(source=domain.EVENT_SOURCE))


def consumer_specs(runtime) -> list[ConsumerSpec]:
    return [
        ConsumerSpec(group=ATTRIBUTION_GROUP, topics=["zone.interactions", "zone.customers"], handler=on_attribution,
                     batch_handler=on_attributions,
                     types=frozenset({"identity.interaction.attributed", "identity.customer.merged"}),
                     description="which customer each recorded interaction was attributed to"),
        ConsumerSpec(group=PRIVACY_GROUP, topics=["zone.privacy"], handler=on_erasure_requested,
                     types=frozenset({"identity.customer.erasure_requested"}),
                     description="purges a customer's interactions and answers ingest.erasure.completed"),
    ]
