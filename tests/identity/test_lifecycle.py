"""Merge, unmerge, consent and erasure through the domain functions, observed in the
outbox (what other departments receive) and in the tables."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from socialzone_common.errors import Conflict, NotFound, Unprocessable
from socialzone_common.events.care import CaseOpened
from socialzone_identity import merging, privacy
from socialzone_identity.models import IdentifierLink, Suppression, TimelineEntry

from tests.identity.conftest import Identity
from tests.identity.factory import crm, recorded


@pytest.fixture
def store(identity_settings):
    s = Identity(identity_settings)
    yield s
    s.engine.dispose()


def _merge(store, a, b, **options):
    with store.sessions() as session:
        record = merging.merge(session, rules=store.ctx.rules, first=a, second=b, rule="manual", actor="agent-7",
                               **options)
        session.commit()
        return record


def test_department_events_for_a_merged_id_land_on_the_survivor_and_go_back_on_unmerge(store):
    a, b = recorded(("x", "1")), recorded(("x", "2"))
    store.ingest(a, b)
    older, newer = store.customer_of(a), store.customer_of(b)
    _merge(store, older, newer)
    store.project(CaseOpened(case_id="c-1", customer_id=newer, opened_from="agent", channel="x", priority="low",
                             queue="q", sla_policy="standard").to_envelope(source="socialzone/care"))
    with store.sessions() as session:
        entry = session.execute(select(TimelineEntry).where(TimelineEntry.event_type == "care.case.opened")).scalars().one()
    assert (entry.customer_id, entry.origin_customer_id) == (older, newer)
    with store.sessions() as session:
        merging.unmerge(session, customer_id=older, restored_customer_id=newer, identifiers=None, actor="agent-7")
        session.commit()
        entry = session.execute(select(TimelineEntry).where(TimelineEntry.event_type == "care.case.opened")).scalars().one()
    assert entry.customer_id == newer
    unmerged = store.payloads("identity.customer.unmerged")[0]
    assert unmerged.restored_customer_id == newer and [(i.type, i.value) for i in unmerged.identifiers_moved] == [("x", "2")]


def test_unmerge_can_name_which_identifiers_go_back(store):
    a = recorded(("x", "10"))
    b = recorded(("facebook", "f10"), ("email", "b@acme-mail.com"))
    store.ingest(a, b)
    older, newer = store.customer_of(a), store.customer_of(b)
    _merge(store, older, newer)
    with store.sessions() as session:
        result = merging.unmerge(session, customer_id=older, restored_customer_id=newer,
                                 identifiers=[("facebook", "f10")], actor="agent-7", reason="split")
        session.commit()
        owner = dict(session.execute(select(IdentifierLink.value, IdentifierLink.customer_id)).all())
    assert result["identifiers_moved"] == 1
    assert owner == {"10": older, "f10": newer, "b@acme-mail.com": older}


def test_unmerge_refuses_what_was_never_merged_and_changes_nothing(store):
    a, b = recorded(("x", "20")), recorded(("x", "21"))
    store.ingest(a, b)
    before = len(store.published())
    with store.sessions() as session, pytest.raises(Unprocessable, match="never merged"):
        merging.unmerge(session, customer_id=store.customer_of(a), restored_customer_id=store.customer_of(b),
                        identifiers=None, actor="x")
    assert len(store.published()) == before


def test_an_unmerge_through_a_later_merge_says_which_unmerge_comes_first(store):
    """B merged into A, then A into C: B is not split off C directly, and the error names the
    order that does it; that order then works."""
    c, a, b = recorded(("x", "40")), recorded(("x", "41")), recorded(("x", "42"))  # oldest first
    store.ingest(c, a, b)
    ca, cb, cc = store.customer_of(a), store.customer_of(b), store.customer_of(c)
    with store.sessions() as session:
        merging.merge(session, rules=store.ctx.rules, first=ca, second=cb, rule="manual", actor="x")
        merging.merge(session, rules=store.ctx.rules, first=cc, second=ca, rule="manual", actor="x")
        session.commit()
    before = len(store.published())
    with store.sessions() as session, pytest.raises(Unprocessable) as refused:
        merging.unmerge(session, customer_id=cc, restored_customer_id=cb, identifiers=None, actor="x")
    assert refused.value.detail == (
        f"{cb} was merged into {ca}, which was merged into {cc}; it is not split off {cc} directly: "
        f"unmerge {ca} from {cc}, then {cb} from {ca}")
    assert len(store.published()) == before
    with store.sessions() as session:
        merging.unmerge(session, customer_id=cc, restored_customer_id=ca, identifiers=None, actor="x")
        merging.unmerge(session, customer_id=ca, restored_customer_id=cb, identifiers=None, actor="x")
        session.commit()
        owners = dict(session.execute(select(IdentifierLink.value, IdentifierLink.customer_id)).tuples().all())
    assert owners == {"40": cc, "41": ca, "42": cb}


def test_merge_of_a_customer_with_itself_or_an_unknown_one_is_refused(store):
    a = recorded(("x", "30"))
    store.ingest(a)
    cid = store.customer_of(a)
    with store.sessions() as session:
        with pytest.raises(Unprocessable, match="itself"):
            merging.merge(session, rules=store.ctx.rules, first=cid, second=cid, rule="manual", actor="x")
        with pytest.raises(NotFound):
            merging.merge(session, rules=store.ctx.rules, first=cid, second="cus_missing", rule="manual", actor="x")


def test_a_preview_reports_cap_violations_and_an_automatic_merge_refuses_them(store):
    store.ctx.rules.caps["email"] = 1
    a, b = crm(("crm:s", "A"), ("email", "a@acme-mail.com")), crm(("crm:s", "B"), ("email", "b@acme-mail.com"))
    store.ingest(a, b)
    with store.sessions() as session:
        preview = merging.preview(session, rules=store.ctx.rules, first=store.customer_of(a), second=store.customer_of(b))
        assert preview["cap_violations"] == {"email": {"count": 2, "cap": 1}}
        with pytest.raises(Conflict, match="caps"):
            merging.merge(session, rules=store.ctx.rules, first=store.customer_of(a), second=store.customer_of(b),
                          rule="deterministic_record", actor="x")


def test_consent_changes_are_published_and_the_most_restrictive_wins_on_merge(store):
    a, b = recorded(("x", "40")), recorded(("x", "41"))
    store.ingest(a, b)
    older, newer = store.customer_of(a), store.customer_of(b)
    purposes = store.settings.consent_purposes
    with store.sessions() as session:
        privacy.set_consent(session, customer_id=older, purpose="profiling", granted=True, source="web_form",
                            changed_at=None, actor="api", reason=None, purposes=purposes)
        privacy.set_consent(session, customer_id=newer, purpose="profiling", granted=False, source="agent",
                            changed_at=None, actor="api", reason=None, purposes=purposes)
        session.commit()
    _merge(store, older, newer)
    changes = store.payloads("identity.consent.changed")
    assert [(c.customer_id, c.granted, c.source) for c in changes][-1] == (older, False, "merge")


def test_erasure_covers_merged_customers_and_leaves_only_hashes(store):
    a, b = crm(("crm:s", "E1"), ("email", "gone@acme-mail.com")), recorded(("x", "50"))
    store.ingest(a, b)
    older, newer = store.customer_of(a), store.customer_of(b)
    _merge(store, older, newer)
    with store.sessions() as session:
        erasure = privacy.request_erasure(session, rules=store.ctx.rules, customer_id=newer, actor="dpo",
                                          reason="art. 17", services=["care"])
        session.commit()
        assert session.execute(select(IdentifierLink)).first() is None
        assert session.execute(select(TimelineEntry)).first() is None
        hashes = session.execute(select(Suppression.hash)).scalars().all()
    assert len(hashes) == 3 and not any("gone" in h for h in hashes)
    requested = store.payloads("identity.customer.erasure_requested")[0]
    assert requested.customer_id == older and requested.merged_ids == (newer,) and requested.erasure_id == erasure.id
    store.ingest(recorded(("x", "50"), ("x_handle", "back_again")))
    assert store.ctx.stats.get("suppressed") == 1
    with store.sessions() as session:
        assert session.execute(select(IdentifierLink)).first() is None
