"""On SQLite the batch resolver resolves a batch before its transaction takes the writer
turn (``BatchResolver.prepare``) and, under the turn, makes those writes only if every
read they came from still returns the same rows; otherwise it resolves the batch again.
Here another writer changes what a prepared batch read, between its preparation and its
transaction, as a second consumer process does."""

from __future__ import annotations

from sqlalchemy import func, select

from socialzone_common import db
from socialzone_common.inbox import claim_many
from socialzone_identity import merging
from socialzone_identity.fastpath import BatchResolver, resolved_ahead
from socialzone_identity.models import Customer, IdentifierLink

from tests.identity.conftest import Identity
from tests.identity.factory import recorded


def _prepare(store: Identity, *envelopes):
    """A resolver and the batch prepared as the consumer prepares it (no writer turn)."""
    resolver = BatchResolver(store.ctx)
    with store.sessions() as session:
        prepared = resolver.prepare(session, list(envelopes))
    return resolver, prepared


def _resolve(store: Identity, resolver: BatchResolver, prepared, *envelopes) -> None:
    with store.sessions() as session:
        db.begin_writing(session)
        fresh = claim_many(session, group="identity-resolution", envelopes=list(envelopes))
        resolver.resolve(session, fresh, prepared)
        session.commit()


def test_a_batch_resolved_ahead_goes_to_the_survivor_of_a_merge_committed_meanwhile(identity_settings):
    store = Identity(identity_settings, batched=True)
    try:
        ann, bob = recorded(("x", "1"), display_name="Ann"), recorded(("x", "2"), display_name="Bob")
        store.ingest(ann)
        store.ingest(bob)
        older, newer = store.customer_of(ann), store.customer_of(bob)
        later = recorded(("x", "2"), display_name="Bob again")
        held, stale = resolved_ahead("held"), resolved_ahead("stale")
        resolver, prepared = _prepare(store, later)
        assert prepared.speculation is not None  # resolved ahead, to Bob's customer
        with store.sessions() as other:  # another writer: an agent merges Bob into Ann
            merging.merge(other, rules=store.ctx.rules, first=older, second=newer, rule="manual", actor="agent")
            other.commit()
        _resolve(store, resolver, prepared, later)
        assert store.customer_of(later) == older
        assert resolved_ahead("stale") == stale + 1  # operators see it in /metrics
        assert resolved_ahead("held") == held
    finally:
        store.engine.dispose()


def test_a_new_identifier_linked_meanwhile_by_another_writer_makes_no_second_customer(identity_settings):
    store = Identity(identity_settings, batched=True)
    try:
        first = recorded(("mastodon", "new@social.example"), display_name="Newcomer")
        stale = resolved_ahead("stale")
        resolver, prepared = _prepare(store, first)
        assert prepared.speculation is not None  # resolved ahead: a new customer
        store.ingest(recorded(("mastodon", "new@social.example"), display_name="Newcomer"))  # the other process
        _resolve(store, resolver, prepared, first)
        with store.sessions() as session:
            assert session.execute(select(func.count()).select_from(Customer)).scalar_one() == 1
            owners = session.execute(select(IdentifierLink.customer_id)).scalars().all()
        assert owners == [store.customer_of(first)]
        assert resolved_ahead("stale") == stale + 1
    finally:
        store.engine.dispose()


def test_a_batch_nobody_changed_meanwhile_is_written_as_resolved_ahead(identity_settings):
    store = Identity(identity_settings, batched=True)
    try:
        store.ingest(recorded(("x", "7"), display_name="Kim"))
        events = [recorded(("x", "7"), display_name="Kim"), recorded(("x", "8"), display_name="Lee")]
        held, stale = resolved_ahead("held"), resolved_ahead("stale")
        resolver, prepared = _prepare(store, *events)
        planned = {cust.id for cust in prepared.speculation.batch.new_customers}
        _resolve(store, resolver, prepared, *events)
        assert resolved_ahead("held") == held + 1
        assert resolved_ahead("stale") == stale
        assert {store.customer_of(events[1])} == planned  # the customer created ahead is the one written
        assert store.customer_of(events[0]) != store.customer_of(events[1])
    finally:
        store.engine.dispose()


def test_a_batch_with_an_event_for_the_one_event_path_is_not_resolved_ahead(identity_settings):
    """A merge (two customers' ids in one deterministic record) goes through the one-event
    path, under the turn: such a batch is only parsed ahead."""
    store = Identity(identity_settings, batched=True)
    try:
        store.ingest(recorded(("x", "1")), recorded(("email", "a@example.com"), source="crm", kind="contact"))
        record = recorded(("crm", "C-1"), ("x", "1"), ("email", "a@example.com"), source="crm", kind="contact")
        resolver, prepared = _prepare(store, record)
        assert prepared.speculation is None
        _resolve(store, resolver, prepared, record)
        assert len(store.published("identity.customer.merged")) == 1
    finally:
        store.engine.dispose()
