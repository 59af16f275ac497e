"""The shortcuts of the batch resolver's hot path: the suppression probe (an empty
suppression list skips the per-identifier look-up) and the name and place a profile
observation gives (worked out once per reconciliation)."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select

from socialzone_identity.identifiers import Normalized
from socialzone_identity.models import IdentifierLink, Suppression
from socialzone_identity.profile import reconcile

from tests.identity.conftest import Identity
from tests.identity.factory import recorded

AT = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_a_batch_skips_suppressed_identifiers_and_attributes_the_rest(identity_settings):
    store = Identity(identity_settings, batched=True)
    try:
        store.ingest(recorded(("x", "1")))  # an empty suppression list: attributed
        with store.sessions() as session:
            session.add(Suppression(hash=store.ctx.rules.suppression_hash(Normalized("x", "2")), erasure_id="era_1"))
            session.commit()
        store.ingest(recorded(("x", "2"), ("x_handle", "gone")), recorded(("x", "3")))
        assert store.ctx.stats == {"created": 2, "suppressed": 1}
        with store.sessions() as session:
            linked = set(session.execute(select(IdentifierLink.type, IdentifierLink.value)).tuples())
        assert linked == {("x", "1"), ("x", "3")}
    finally:
        store.engine.dispose()


def _names_and_places(values: dict) -> tuple[list, list]:
    profile, _changed = reconcile(None, values, kind="social", at=AT, origin="cus_1")
    return profile["names"], profile["locations"]


def test_the_full_name_joins_what_is_known_of_given_name_and_surname():
    assert _names_and_places({"given_name": "Ana", "surname": "Silva"})[0] == ["Ana Silva"]
    assert _names_and_places({"given_name": "Ana"})[0] == ["Ana"]
    assert _names_and_places({"surname": "Silva"})[0] == ["Silva"]
    assert _names_and_places({"display_name": "ana_s", "given_name": "Ana"})[0] == ["ana_s", "Ana"]
    assert _names_and_places({"city": "Lisbon"})[0] == []


def test_the_place_is_the_free_text_location_else_city_and_country():
    assert _names_and_places({"location": "Lisbon, somewhere", "city": "Porto"})[1] == ["Lisbon, somewhere"]
    assert _names_and_places({"city": "Lisbon", "country": "PT"})[1] == ["Lisbon, PT"]
    assert _names_and_places({"city": "Lisbon"})[1] == ["Lisbon"]
    assert _names_and_places({"country": "PT"})[1] == ["PT"]
    assert _names_and_places({"given_name": "Ana"})[1] == []


def test_an_observation_already_in_the_profile_changes_nothing_and_a_new_place_does():
    values = {"given_name": "Ana", "surname": "Silva", "city": "Lisbon", "country": "PT"}
    profile, changed = reconcile(None, values, kind="crm", at=AT, origin="cus_1")
    assert changed == "value"
    assert reconcile(profile, values, kind="crm", at=AT, origin="cus_1") == (profile, "")
    moved, changed = reconcile(profile, {**values, "city": "Porto"}, kind="crm", at=AT, origin="cus_1")
    assert changed == "value" and moved["locations"] == ["Lisbon, PT", "Porto, PT"]
