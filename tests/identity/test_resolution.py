"""The resolution consumer: one customer per person, whatever the author's identifiers."""

from __future__ import annotations

from sqlalchemy import select

from socialzone_identity.models import Customer, IdentifierLink, MatchSuggestion, TimelineEntry

from tests.identity.factory import crm, recorded, retracted


def test_an_unknown_author_becomes_a_new_customer_with_linked_identifiers(identity):
    event = recorded(("x", "1001"), ("x_handle", "@Acme_Fan"), display_name="Ana Fan")
    identity.ingest(event)
    created = identity.payloads("identity.customer.created")
    linked = identity.payloads("identity.identifier.linked")
    attributed = identity.payloads("identity.interaction.attributed")
    assert len(created) == 1 and attributed[0].customer_id == created[0].customer_id
    assert attributed[0].matched_by is None
    assert {(p.identifier.type, p.identifier.value, p.strength) for p in linked} == {
        ("x", "1001", "strong"), ("x_handle", "acme_fan", "weak")}
    assert attributed[0].interaction.interaction_id == event.data["interaction"]["interaction_id"]


def test_a_known_identifier_attaches_the_interaction_and_new_identifiers(identity):
    first, second = recorded(("x", "1001")), recorded(("x", "1001"), ("email", "Ana@Example.NET"))
    identity.ingest(first, second)
    assert identity.customer_of(first) == identity.customer_of(second)
    assert len(identity.payloads("identity.customer.created")) == 1
    second_attr = identity.payloads("identity.interaction.attributed")[-1]
    assert (second_attr.matched_by.type, second_attr.matched_by.value) == ("x", "1001")
    emails = [p for p in identity.payloads("identity.identifier.linked") if p.identifier.type == "email"]
    assert emails[0].identifier.value == "ana@example.net" and emails[0].strength == "weak"


def test_a_crm_record_with_email_and_phone_of_two_customers_merges_them_keeping_the_older(identity):
    a, b = recorded(("email", "ana@example.net")), recorded(("phone", "+44 20 7946 0958"))
    identity.ingest(a, b)
    older, newer = identity.customer_of(a), identity.customer_of(b)
    assert older != newer
    identity.ingest(crm(("crm:shop", "C-1"), ("email", "ana@example.net"), ("phone", "+442079460958"),
                        transaction={"type": "order", "amount": "19.99", "currency": "EUR"}))
    merged = identity.payloads("identity.customer.merged")
    assert len(merged) == 1 and (merged[0].survivor_id, merged[0].merged_id) == (older, newer)
    with identity.sessions() as session:
        assert session.get(Customer, newer).merged_into == older
        owners = set(session.execute(select(IdentifierLink.customer_id)).scalars())
        assert owners == {older}
        assert set(session.execute(select(TimelineEntry.customer_id)).scalars()) == {older}


def test_a_social_profile_with_a_verified_email_merges_the_customers_it_names(identity):
    a, b = recorded(("x", "71"), display_name="A"), recorded(("facebook", "fb-72"), ("email", "v@example.net"))
    identity.ingest(a, b)
    older, newer = identity.customer_of(a), identity.customer_of(b)
    identity.ingest(recorded(("x", "71"), ("email", "v@example.net"), verified_identifiers=("email",)))
    merged = identity.payloads("identity.customer.merged")
    assert [(m.survivor_id, m.merged_id) for m in merged] == [(older, newer)]


def test_an_authenticated_login_merges_the_customers_it_names(identity):
    a, b = recorded(("x", "81")), recorded(("reddit", "u_82"))
    identity.ingest(a, b)
    older, newer = identity.customer_of(a), identity.customer_of(b)
    identity.ingest(recorded(("x", "81"), ("reddit", "u_82"), source="web", authenticated=True))
    merged = identity.payloads("identity.customer.merged")
    assert [(m.survivor_id, m.merged_id) for m in merged] == [(older, newer)]


def test_an_unverified_email_in_a_post_still_does_not_merge(identity):
    a, b = recorded(("x", "91")), recorded(("facebook", "fb-92"), ("email", "u@example.net"))
    identity.ingest(a, b)
    identity.ingest(recorded(("x", "91"), ("email", "u@example.net"), verified_identifiers=()))
    assert identity.payloads("identity.customer.merged") == []


def test_weak_co_occurrence_never_merges_it_suggests(identity):
    a, b = recorded(("x", "1"), display_name="A"), recorded(("facebook", "fb-2"), ("email", "shared@example.net"))
    identity.ingest(a, b)
    # an ordinary post by the X account mentions the e-mail that belongs to the other customer
    identity.ingest(recorded(("x", "1"), ("email", "shared@example.net")))
    assert identity.published("identity.customer.merged") == []
    with identity.sessions() as session:
        suggestion = session.execute(select(MatchSuggestion)).scalars().one()
    assert {suggestion.customer_a, suggestion.customer_b} == {identity.customer_of(a), identity.customer_of(b)}
    assert suggestion.rule == "weak_identifier" and suggestion.status == "open"


def test_a_renamed_handle_still_finds_the_customer_through_the_platform_id(identity):
    first = recorded(("x", "42"), ("x_handle", "old_name"))
    renamed = recorded(("x", "42"), ("x_handle", "new_name"))
    identity.ingest(first, renamed)
    by_old_handle = recorded(("x_handle", "old_name"))
    identity.ingest(by_old_handle)
    assert identity.customer_of(first) == identity.customer_of(renamed) == identity.customer_of(by_old_handle)


def test_a_handle_taken_over_by_another_account_follows_the_new_platform_id_without_merging(identity):
    identity.ingest(recorded(("x", "42"), ("x_handle", "cool")))
    other = recorded(("x", "77"), ("x_handle", "cool"))
    identity.ingest(other)
    assert identity.published("identity.customer.merged") == []
    assert identity.payloads("identity.customer.created").__len__() == 2
    later = recorded(("x_handle", "cool"))
    identity.ingest(later)
    assert identity.customer_of(later) == identity.customer_of(other)


def test_junk_and_invalid_identifiers_are_ignored_and_an_all_junk_author_is_not_attributed(identity):
    identity.ingest(recorded(("email", "test@test.com"), ("x", "5"), ("phone", "unknown")))
    linked = identity.payloads("identity.identifier.linked")
    assert [(p.identifier.type, p.identifier.value) for p in linked] == [("x", "5")]
    junk = recorded(("email", "test@test.com"))
    identity.ingest(junk)
    assert all(p.interaction.interaction_id != junk.data["interaction"]["interaction_id"]
               for p in identity.payloads("identity.interaction.attributed"))
    assert identity.ctx.stats.get("unidentifiable") == 1


def test_a_merge_that_would_break_a_cap_goes_to_review(identity):
    identity.settings.identifier_caps["email"] = 2
    identity.ctx.rules.caps["email"] = 2
    a = recorded(("crm:shop", "A"), ("email", "a1@example.net"), ("email", "a2@example.net"), source="crm")
    b = recorded(("crm:shop", "B"), ("email", "b1@example.net"), source="crm")
    identity.ingest(a, b)
    identity.ingest(crm(("crm:shop", "A"), ("crm:shop", "B")))
    assert identity.published("identity.customer.merged") == []
    with identity.sessions() as session:
        suggestion = session.execute(select(MatchSuggestion)).scalars().one()
    assert suggestion.rule == "cap_exceeded"


def test_a_retracted_interaction_keeps_its_entry_without_text(identity):
    event = recorded(("x", "9"), text="my password is hunter2")
    identity.ingest(event)
    identity.ingest(retracted(event))
    with identity.sessions() as session:
        entry = session.execute(select(TimelineEntry).where(
            TimelineEntry.event_type == "identity.interaction.attributed")).scalars().one()
    assert entry.retracted and entry.event["interaction"]["text"] is None and "hunter2" not in entry.summary
    retraction = identity.payloads("identity.interaction.retracted")
    assert retraction[0].customer_id == identity.customer_of(event)


def test_a_redelivered_interaction_changes_nothing(identity):
    event = recorded(("x", "3"))
    identity.ingest(event, event)
    assert len(identity.published("identity.interaction.attributed")) == 1


def test_similar_profiles_without_shared_identifiers_become_a_scored_suggestion(identity):
    a = recorded(("x", "301"), ("x_handle", "ana_silva"), display_name="Ana Silva",
                 attributes={"given_name": "Ana", "surname": "Silva", "city": "Lisbon", "birth_date": "1990-01-02"})
    b = recorded(("instagram", "9911"), ("instagram_handle", "ana_silva"), source="instagram", display_name="Anna Silva",
                 attributes={"given_name": "Anna", "surname": "Silva", "city": "Lisboa", "birth_date": "1990-01-02"})
    c = recorded(("x", "302"), display_name="Zed Unrelated", attributes={"given_name": "Zed", "surname": "Quux"})
    identity.ingest(a, b, c)
    assert identity.match() == 3
    assert identity.published("identity.customer.merged") == []
    with identity.sessions() as session:
        suggestions = session.execute(select(MatchSuggestion)).scalars().all()
    assert len(suggestions) == 1
    s = suggestions[0]
    assert {s.customer_a, s.customer_b} == {identity.customer_of(a), identity.customer_of(b)}
    assert s.rule == "match_model" and s.probability >= identity.settings.suggestion_threshold()
    assert "surname" in s.features["features"] and s.features["reasons"]
