"""The batch paths: the batch resolver against the one-event resolution, the batch
timeline projection, and the batched matcher."""

from __future__ import annotations

from sqlalchemy import select

from socialzone_common.catalog import parse_payload
from socialzone_common.envelope import from_structured, to_structured
from socialzone_common.events.care import CaseOpened
from socialzone_common.inbox import claim_many
from socialzone_common.outbox import OutboxMessage
from socialzone_identity.consumers import on_department_events
from socialzone_identity.fastpath import resolved_ahead
from socialzone_identity.models import Customer, IdentifierLink, MatchSuggestion, TimelineEntry

from tests.identity.conftest import Identity
from tests.identity.factory import crm, recorded, retracted


def _story():
    """New authors, returning ones, handles, CRM records, a merge, a handle taken over, a
    capped merge, a retraction and a redelivery, in one stream."""
    a1 = recorded(("x", "100"), ("x_handle", "ana"), display_name="Ana", attributes={"city": "Lisbon"})
    a2 = recorded(("x", "100"), ("x_handle", "ana"), display_name="Ana Silva", sentiment=0.5, language="pt")
    b1 = recorded(("mastodon", "bea@social.example"), display_name="Bea")
    c1 = crm(("crm", "C-1"), ("email", "carl@example.com"), display_name="Carl",
             transaction={"type": "order", "amount": "19.99", "currency": "EUR"})
    c2 = crm(("crm", "C-1"), ("phone", "+351912345678"),
             transaction={"type": "refund", "amount": "5.00", "currency": "EUR"})
    merge = crm(("crm", "C-1"), ("email", "bea@social.example"), ("x", "100"))
    a3 = recorded(("x", "100"), ("x_handle", "ana_renamed"), display_name="Ana")
    takeover = recorded(("x", "999"), ("x_handle", "ana"), display_name="Not Ana")
    d1 = recorded(("x", "200"), ("email", "d1@example.com"), ("email", "d2@example.com"), ("email", "d3@example.com"))
    d2 = recorded(("x", "201"), ("email", "d4@example.com"), ("email", "d5@example.com"), ("email", "d6@example.com"))
    capped = crm(("email", "d1@example.com"), ("email", "d4@example.com"), verified_identifiers=("email",))
    weak = recorded(("x_handle", "ana_renamed"), ("instagram", "77"))
    two_x = crm(("crm", "K-2"), ("x", "300"), ("x", "301"), ("x_handle", "kim"))  # kim is x:300's handle
    older, newer = crm(("crm", "K-7")), crm(("email", "b7@example.com"), ("phone", "+351912345679"))
    across = crm(("email", "b7@example.com"), ("crm", "K-7"), ("phone", "+351912345679"))  # newer, older, newer
    return [a1, a2, b1, c1, c2, a3, merge, takeover, d1, d2, capped, weak, retracted(a2), a1,
            two_x, older, newer, across]


def _snapshot(store: Identity) -> dict:
    """What identity holds and published, with generated ids replaced by the interaction
    that created each customer (the two paths draw different random ids)."""
    with store.sessions() as session:
        outbox = [from_structured(r.envelope)
                  for r in session.execute(select(OutboxMessage).order_by(OutboxMessage.id)).scalars()]
        customers = session.execute(select(Customer).order_by(Customer.created_at, Customer.id)).scalars().all()
        identifiers = session.execute(select(IdentifierLink).order_by(IdentifierLink.id)).scalars().all()
        entries = session.execute(select(TimelineEntry).order_by(TimelineEntry.id)).scalars().all()
        suggestions = session.execute(select(MatchSuggestion).order_by(MatchSuggestion.id)).scalars().all()
    names = {}
    for e in outbox:
        if e.type == "identity.customer.created":
            names[e.data["customer_id"]] = "customer<" + e.data["interaction_id"] + ">"
    ident_names = {i.id: (i.type, i.value) for i in identifiers}
    event_names = {e.id: f"{e.type}#{n}" for n, e in enumerate(outbox)}

    def fix(value):
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fix(v) for v in value]
        return names.get(value, event_names.get(value, value)) if isinstance(value, str) else value

    def text(value):
        for cid, name in names.items():
            value = value.replace(cid, name)
        return value

    def when(entry):  # identity's own changes happen "now"; interactions keep their time
        return entry.occurred_at if entry.event_type in ("identity.interaction.attributed",
                                                         "identity.customer.created") else "now"

    def profile(p):
        if not p:
            return p
        return {**p, "fields": {k: {**f, "from": names.get(f["from"], f["from"])} for k, f in p["fields"].items()}}

    return {
        "events": [(e.type, fix(e.subject), fix(e.data)) for e in outbox],
        "customers": [(names[c.id], c.status, names.get(c.merged_into), c.display_name, c.search_text,
                       profile(c.profile), c.needs_match) for c in customers],
        "identifiers": [(i.type, i.value, names[i.customer_id], names[i.origin_customer_id], i.strength, i.rule,
                         i.evidence_event_id, ident_names.get(i.anchor_id)) for i in identifiers],
        "timeline": [(names[t.customer_id], names[t.origin_customer_id], ident_names.get(t.via_identifier_id),
                      event_names[t.event_id], t.event_type, t.department, when(t), text(t.summary), t.channel,
                      t.interaction_id, t.sentiment, t.language, None if t.amount is None else float(t.amount),
                      t.currency, t.retracted, fix(t.event)) for t in entries],
        "suggestions": sorted((sorted((names[s.customer_a], names[s.customer_b])), s.rule, s.status)
                              for s in suggestions),
    }


def test_the_batch_resolver_and_the_one_event_path_write_the_same_customers_events_and_timeline(identity_settings,
                                                                                                 tmp_path):
    story = _story()
    one = Identity(identity_settings.model_copy(update={"data_dir": tmp_path / "one"}))
    batched = Identity(identity_settings.model_copy(update={"data_dir": tmp_path / "batch"}), batched=True)
    held = resolved_ahead("held")
    try:
        one.ingest(*story)
        batched.ingest(*story[:3])  # a few batches, so that later ones find earlier customers
        batched.ingest(*story[3:])
        expected, got = _snapshot(one), _snapshot(batched)
        assert got["customers"] == expected["customers"]
        assert got["identifiers"] == expected["identifiers"]
        assert got["timeline"] == expected["timeline"]
        assert got["suggestions"] == expected["suggestions"]
        assert got["events"] == expected["events"]
        assert any(t == "identity.customer.merged" for t, _s, _d in got["events"])
        assert batched.ctx.stats == one.ctx.stats
        if identity_settings.database_url is None:  # SQLite: batches without a merge were resolved ahead
            assert resolved_ahead("held") >= held + 1
    finally:
        one.engine.dispose()
        batched.engine.dispose()


def test_the_batch_resolver_writes_envelopes_exactly_as_to_structured_does(identity_settings, tmp_path):
    store = Identity(identity_settings.model_copy(update={"data_dir": tmp_path / "b"}), batched=True)
    try:
        store.ingest(recorded(("x", "5"), ("x_handle", "eve"), display_name="Eve \u00e9 \"quoted\""),
                     crm(("crm", "C-9"), ("email", "eve@example.com"),
                         transaction={"type": "order", "amount": "1.50", "currency": "EUR"}))
        with store.sessions() as session:
            rows = session.execute(select(OutboxMessage).order_by(OutboxMessage.id)).scalars().all()
        assert len(rows) == 8  # two created, four linked, two attributed
        for row in rows:
            envelope = from_structured(row.envelope)
            assert to_structured(envelope) == row.envelope
            assert row.partition_key == envelope.partitionkey == envelope.subject
            parse_payload(envelope)  # a valid payload of its catalog type
    finally:
        store.engine.dispose()


def test_many_one_event_interactions_in_a_batch_reread_only_what_they_touch(identity_settings, tmp_path):
    """Merges in the middle of a batch: later interactions of the merged customers go to
    the survivor, whether they come through the fast path or not."""
    store = Identity(identity_settings.model_copy(update={"data_dir": tmp_path / "m"}), batched=True)
    try:
        people = [recorded(("x", str(1000 + i)), display_name=f"P{i}") for i in range(6)]
        store.ingest(*people)
        merges = [crm(("crm", f"M-{i}"), ("x", str(1000 + i)), ("x", str(1003 + i))) for i in range(3)]
        after = [recorded(("x", str(1003 + i)), display_name=f"P{i} again") for i in range(3)]
        store.ingest(*[e for pair in zip(merges, after) for e in pair])
        attributed = {p.interaction.interaction_id: p.customer_id
                      for p in store.payloads("identity.interaction.attributed")}
        for i in range(3):
            survivor = attributed[people[i].data["interaction"]["interaction_id"]]
            assert attributed[after[i].data["interaction"]["interaction_id"]] == survivor
        assert len(store.published("identity.customer.merged")) == 3
    finally:
        store.engine.dispose()


def test_a_profile_update_in_a_later_batch_keeps_a_pending_match(identity_settings, tmp_path):
    store = Identity(identity_settings.model_copy(update={"data_dir": tmp_path / "p"}), batched=True)
    try:
        first = recorded(("x", "42"), display_name="Zoe")
        store.ingest(first)
        store.ingest(recorded(("x", "42"), display_name="Zoe"))  # only "seen again": not worth re-matching
        with store.sessions() as session:
            assert session.execute(select(Customer.needs_match)).scalar_one() is True
    finally:
        store.engine.dispose()


def _opened(customer_id: str, case: str):
    return CaseOpened(case_id=case, customer_id=customer_id, opened_from="interaction", interaction_id="int-1",
                      channel="x", priority="high", queue="billing", topic="billing",
                      sla_policy="standard").to_envelope(source="socialzone/care")


def _project_batch(store: Identity, envelopes) -> None:
    """As the worker's batch transaction does: bulk inbox claims, then the batch handler."""
    with store.sessions() as session:
        fresh = claim_many(session, group="identity-timeline", envelopes=list(envelopes))
        on_department_events(session, fresh)
        session.commit()


def test_the_batch_timeline_projection_follows_merges_and_is_idempotent_on_redelivery(identity_settings, tmp_path):
    store = Identity(identity_settings.model_copy(update={"data_dir": tmp_path / "t"}), batched=True)
    try:
        a, b = recorded(("x", "1")), recorded(("x", "2"))
        store.ingest(a, b)
        older, newer = store.customer_of(a), store.customer_of(b)
        store.ingest(crm(("crm", "K"), ("x", "1"), ("x", "2")))  # merges newer into older
        events = [_opened(older, "case-1"), _opened(newer, "case-2"), _opened("cus_unknown", "case-3")]
        _project_batch(store, events)
        _project_batch(store, events)  # redelivered: nothing doubled
        with store.sessions() as session:
            entries = session.execute(select(TimelineEntry).where(TimelineEntry.department == "care")
                                      .order_by(TimelineEntry.id)).scalars().all()
        assert [(e.ref_id, e.customer_id, e.origin_customer_id) for e in entries] == [
            ("case-1", older, older), ("case-2", older, newer)]
        assert entries[0].summary == "case case-1 opened (high, queue billing)"
    finally:
        store.engine.dispose()


def test_the_batch_timeline_projection_writes_what_the_one_event_handler_writes(identity_settings, tmp_path):
    one = Identity(identity_settings.model_copy(update={"data_dir": tmp_path / "o"}))
    many = Identity(identity_settings.model_copy(update={"data_dir": tmp_path / "n"}))
    try:
        for store in (one, many):
            store.ingest(recorded(("x", "7"), interaction_id="int-7"))
        events = [_opened(store.customer_of(recorded(("x", "7"), interaction_id="int-7")), f"case-{i}")
                  for i, store in ((0, one), (1, many))]
        one.project(events[0])
        _project_batch(many, [events[1]])
        rows = []
        for store, event in zip((one, many), events):
            with store.sessions() as session:
                e = session.execute(select(TimelineEntry).where(TimelineEntry.department == "care")).scalar_one()
            assert e.occurred_at.replace(tzinfo=event.time.tzinfo) == event.time
            rows.append((e.event_type, e.department, e.channel, e.interaction_id, e.retracted, e.event["queue"],
                         e.summary.replace("case-0", "case-X").replace("case-1", "case-X")))
        assert rows[0] == rows[1]
    finally:
        one.engine.dispose()
        many.engine.dispose()


def test_the_matcher_scores_a_burst_in_one_pass_and_skips_oversized_blocks(identity_settings, tmp_path):
    from socialzone_identity.matcher import load_matcher, match_pending

    store = Identity(identity_settings.model_copy(update={"data_dir": tmp_path / "x"}), batched=True)
    try:
        twins = [recorded(("x", str(500 + i)), display_name="Ana Silva",
                          attributes={"given_name": "Ana", "surname": "Silva", "city": "Lisbon",
                                      "birth_date": "1990-01-02", "postcode": "1000-001"}) for i in range(2)]
        crowd = [recorded(("x", str(600 + i)), display_name=f"Someone {i}") for i in range(5)]
        store.ingest(*twins, *crowd)
        matcher = load_matcher()
        with store.sessions() as session:
            assert match_pending(session, matcher, threshold=store.settings.suggestion_threshold(),
                                 max_candidates=50, limit=100) == 7
            session.commit()
        with store.sessions() as session:
            suggestions = session.execute(select(MatchSuggestion)).scalars().all()
            pending = session.execute(select(Customer.id).where(Customer.needs_match.is_(True))).all()
        assert len(suggestions) == 1 and pending == []
        # a key shared by more customers than max_block picks no candidates
        more = [recorded(("x", str(700 + i)), display_name="Ana Silva",
                         attributes={"given_name": "Ana", "surname": "Silva", "city": "Lisbon",
                                     "birth_date": "1990-01-02", "postcode": "1000-001"}) for i in range(2)]
        store.ingest(*more)
        with store.sessions() as session:
            assert match_pending(session, matcher, threshold=store.settings.suggestion_threshold(),
                                 max_candidates=50, limit=100, max_block=1) == 2
            session.commit()
        with store.sessions() as session:
            assert len(session.execute(select(MatchSuggestion)).scalars().all()) == 1
    finally:
        store.engine.dispose()


def test_on_postgresql_the_batch_resolver_and_the_one_event_path_agree(pg_settings):
    from socialzone_identity.settings import IdentitySettings

    story = _story()
    one = Identity(IdentitySettings(**pg_settings.model_dump()))
    batched = Identity(IdentitySettings(**pg_settings.model_copy(
        update={"database_schema_prefix": pg_settings.database_schema_prefix + "b_"}).model_dump()), batched=True)
    try:
        one.ingest(*story)
        batched.ingest(*story[:3])
        batched.ingest(*story[3:])
        expected, got = _snapshot(one), _snapshot(batched)
        for part in ("customers", "identifiers", "timeline", "suggestions", "events"):
            assert got[part] == expected[part], part
    finally:
        one.engine.dispose()
        batched.engine.dispose()


def test_a_handle_is_anchored_to_the_first_platform_id_of_its_record_on_both_paths(identity_settings, tmp_path):
    """Two ids of one platform in a record (a CRM contact with two X accounts): the new
    handle follows the first, in a batch as one event at a time; a later record with the
    same ids then re-links nothing."""
    record = crm(("crm", "K-2"), ("x", "300"), ("x", "301"), ("x_handle", "kim"))
    for batched in (False, True):
        store = Identity(identity_settings.model_copy(update={"data_dir": tmp_path / str(batched)}), batched=batched)
        try:
            store.ingest(record, recorded(("x", "999")))  # two events: a batch
            store.ingest(crm(("crm", "K-2"), ("x", "300"), ("x", "301"), ("x_handle", "kim")))
            with store.sessions() as session:
                rows = {(r.type, r.value): r for r in session.execute(select(IdentifierLink)).scalars()}
            assert rows[("x_handle", "kim")].anchor_id == rows[("x", "300")].id, batched
            assert rows[("x_handle", "kim")].rule != "handle_rebound"
        finally:
            store.engine.dispose()


def test_a_record_naming_the_newer_customer_around_the_older_one_merges_them_once(identity_settings, tmp_path):
    """Its identifiers point at customer B, A, B: after B merges into the older A, the third
    identifier's row still names B, which now answers as A (it was a failed merge of A
    with a merged customer, retried and dead-lettered)."""
    store = Identity(identity_settings.model_copy(update={"data_dir": tmp_path / "s"}))
    try:
        store.ingest(crm(("crm", "K-7")), crm(("email", "b7@example.com"), ("phone", "+351912345679")))
        store.ingest(crm(("email", "b7@example.com"), ("crm", "K-7"), ("phone", "+351912345679")))
        merged = [e for e in _snapshot(store)["events"] if e[0] == "identity.customer.merged"]
        assert len(merged) == 1
        with store.sessions() as session:
            owners = {r.customer_id for r in session.execute(select(IdentifierLink)).scalars()}
            active = session.execute(select(Customer).where(Customer.status == "active")).scalars().all()
        assert len(owners) == 1 and [c.id for c in active] == list(owners)
    finally:
        store.engine.dispose()
