"""Merges and unmerges that must not lose or misplace anything: two merges of the same
pair at once, what an unmerge gives back (identifiers, consents learned through the
merged id after the merge) and what the survivor keeps (names of other merged customers)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from socialzone_common.errors import Unprocessable
from socialzone_identity import merging, resolution
from socialzone_identity.models import Customer, IdentifierLink, Merge
from socialzone_identity.store import chase

from tests.conftest import bearer
from tests.identity.conftest import Identity
from tests.identity.factory import BASE, crm, recorded
from tests.identity.test_api import _count, eventually, platform  # noqa: F401 (the fixture)
from tests.identity.test_batches import _snapshot

ADMIN = bearer("admin")
V = "/identity/v1"


# --- two merges of the same pair at once -------------------------------------------------------

@pytest.fixture
def sqlite_identity(identity_settings):
    store = Identity(identity_settings)
    yield store
    store.engine.dispose()


def _concurrent_merges_of_one_pair(store: Identity) -> None:
    ea, eb = recorded(("x", "71"), at=BASE), recorded(("x", "72"), at=BASE + timedelta(hours=1))
    store.ingest(ea, eb)
    a, b = store.customer_of(ea), store.customer_of(eb)
    first = store.sessions()
    merging.merge(first, rules=store.ctx.rules, first=a, second=b, rule="manual", actor="agent-1")  # holds the locks
    outcome = {}

    def second():
        with store.sessions() as session:
            try:
                merging.merge(session, rules=store.ctx.rules, first=a, second=b, rule="manual", actor="agent-2")
                session.commit()
                outcome["status"] = "merged"
            except Unprocessable as exc:
                outcome["status"], outcome["errors"] = exc.status, exc.extensions.get("errors")

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(1.0)  # the second merge waits for the first one's locks (or writer turn)
    first.commit()
    first.close()
    thread.join(30)
    assert outcome["status"] == 422
    assert outcome["errors"][0]["field"] == "customer_ids"
    with store.sessions() as session:
        assert chase(session, a) == (a, "active")
        assert chase(session, b) == (a, "active")
        assert session.get(Customer, a).merged_into is None
        assert session.execute(select(func.count()).select_from(Merge)).scalar_one() == 1


def test_the_second_of_two_concurrent_merges_of_one_pair_is_a_422_on_postgresql(pg_identity):
    _concurrent_merges_of_one_pair(pg_identity)


def test_the_second_of_two_concurrent_merges_of_one_pair_is_a_422_on_sqlite(sqlite_identity):
    _concurrent_merges_of_one_pair(sqlite_identity)


def test_a_record_whose_customers_are_already_one_is_attributed_without_a_merge(sqlite_identity, monkeypatch):
    """The attribution consumer treats "already one customer" (a concurrent merge won) as done."""
    store = sqlite_identity
    ea, eb = crm(("crm", "R-1"), at=BASE), crm(("crm", "R-2"), at=BASE + timedelta(hours=1))
    store.ingest(ea, eb)
    a = store.customer_of(ea)

    def lost_the_race(session, *, first, second, **_options):
        raise merging.AlreadyOne(first, second, first)

    monkeypatch.setattr(resolution.merging, "merge", lost_the_race)
    both = crm(("crm", "R-1"), ("crm", "R-2"), at=BASE + timedelta(hours=2))
    store.ingest(both)
    assert store.customer_of(both) == a


# --- both resolution paths give a new identifier the origin it came in through ------------------

def test_a_new_identifier_takes_the_origin_of_the_identifier_it_came_in_through_on_both_paths(identity_settings,
                                                                                            tmp_path):
    a, b = recorded(("x", "3001"), at=BASE), recorded(("x", "3002"), at=BASE + timedelta(hours=1))
    merge = crm(("crm", "M-1"), ("x", "3001"), ("x", "3002"), at=BASE + timedelta(hours=2))
    later = recorded(("x", "3002"), ("x_handle", "bobby3002"), at=BASE + timedelta(hours=3))
    one = Identity(identity_settings.model_copy(update={"data_dir": tmp_path / "one"}))
    batched = Identity(identity_settings.model_copy(update={"data_dir": tmp_path / "batch"}), batched=True)
    try:
        one.ingest(a, b, merge, later)
        batched.ingest(a, b, merge)
        batched.ingest(later)  # the fast path: B's x id is known and answers for A
        expected, got = _snapshot(one), _snapshot(batched)
        assert got["identifiers"] == expected["identifiers"]
        assert got["timeline"] == expected["timeline"]
        with one.sessions() as session:
            handle = session.execute(select(IdentifierLink).where(IdentifierLink.value == "bobby3002")).scalar_one()
            assert handle.customer_id == one.customer_of(a)
            assert handle.origin_customer_id == one.customer_of(b)
    finally:
        one.engine.dispose()
        batched.engine.dispose()


# --- unmerge through the API ---------------------------------------------------------------------

async def _merge(platform, a, b):
    r = await platform.client.post(f"{V}/merges", json={"customer_ids": [a, b]}, headers=ADMIN)
    assert r.status_code == 201, r.text


async def _unmerge(platform, survivor, restored, **body):
    return await platform.client.post(f"{V}/customers/{survivor}/unmerge",
                                      json={"restored_customer_id": restored, **body}, headers=ADMIN)


async def test_unmerging_one_customer_keeps_the_names_of_the_others_merged_into_the_survivor(platform):
    await platform.publish(recorded(("x", "1001"), display_name="Alice Anders", at=BASE),
                           recorded(("x", "1002"), display_name="Bob Berg", at=BASE + timedelta(hours=1)),
                           recorded(("x", "1003"), display_name="Carla Chen", attributes={"city": "Porto"},
                                    at=BASE + timedelta(hours=2)))
    a, b, c = [await platform.customer_by(f"x:{n}") for n in (1001, 1002, 1003)]
    await _merge(platform, a, b)
    await _merge(platform, a, c)
    # A learns a new name after the merges
    await platform.publish(recorded(("x", "1001"), display_name="Alice A.", at=BASE + timedelta(hours=3)))
    await eventually(lambda: _count(platform, a, 4))
    r = await _unmerge(platform, a, b)
    assert r.status_code == 200, r.text
    after = (await platform.client.get(f"{V}/customers/{a}", headers=ADMIN)).json()
    assert after["names"] == ["Alice Anders", "Carla Chen", "Alice A."]
    assert after["locations"] == ["Porto"]
    found = (await platform.client.get(f"{V}/customers", params={"q": "carla"}, headers=ADMIN)).json()["items"]
    assert [f["id"] for f in found] == [a]
    assert (await platform.client.get(f"{V}/customers", params={"q": "bob berg"}, headers=ADMIN)).json()["items"][0][
        "id"] == b


async def test_a_consent_set_through_the_merged_id_goes_back_with_it_on_unmerge(platform):
    await platform.publish(recorded(("x", "2001"), at=BASE), recorded(("x", "2002"), at=BASE + timedelta(hours=1)))
    a, b = await platform.customer_by("x:2001"), await platform.customer_by("x:2002")
    for cid in (a, b):
        r = await platform.client.put(f"{V}/customers/{cid}/consents/marketing",
                                      json={"granted": True, "source": "web_form"}, headers=ADMIN)
        assert r.status_code == 200
    await _merge(platform, a, b)
    r = await platform.client.put(f"{V}/customers/{b}/consents/marketing",
                                  json={"granted": False, "source": "email_unsubscribe"}, headers=ADMIN)
    assert r.status_code == 200, r.text
    history = (await platform.client.get(f"{V}/customers/{a}/consents", headers=ADMIN)).json()["history"]
    assert history[-1]["origin_customer_id"] == b
    assert (await _unmerge(platform, a, b)).status_code == 200
    cb = (await platform.client.get(f"{V}/customers/{b}/consents", headers=ADMIN)).json()
    ca = (await platform.client.get(f"{V}/customers/{a}/consents", headers=ADMIN)).json()
    assert [(c["granted"], c["source"]) for c in cb["current"]] == [(False, "email_unsubscribe")]
    assert [(c["granted"], c["source"]) for c in ca["current"]] == [(True, "web_form")]


async def test_the_merged_customers_withdrawal_that_won_the_merge_goes_back_with_it(platform):
    await platform.publish(recorded(("x", "2101"), at=BASE), recorded(("x", "2102"), at=BASE + timedelta(hours=1)))
    a, b = await platform.customer_by("x:2101"), await platform.customer_by("x:2102")
    await platform.client.put(f"{V}/customers/{a}/consents/marketing", json={"granted": True, "source": "web_form"},
                              headers=ADMIN)
    await platform.client.put(f"{V}/customers/{b}/consents/marketing",
                              json={"granted": False, "source": "email_unsubscribe"}, headers=ADMIN)
    await _merge(platform, a, b)
    merged = (await platform.client.get(f"{V}/customers/{a}/consents", headers=ADMIN)).json()
    assert merged["current"][0]["granted"] is False
    assert (await _unmerge(platform, a, b)).status_code == 200
    ca = (await platform.client.get(f"{V}/customers/{a}/consents", headers=ADMIN)).json()
    cb = (await platform.client.get(f"{V}/customers/{b}/consents", headers=ADMIN)).json()
    assert ca["current"][0]["granted"] is True
    assert cb["current"][0]["granted"] is False


async def test_identifiers_learned_through_the_merged_customer_go_back_with_it(platform):
    await platform.publish(recorded(("x", "3001"), at=BASE), recorded(("x", "3002"), at=BASE + timedelta(hours=1)))
    a, b = await platform.customer_by("x:3001"), await platform.customer_by("x:3002")
    await _merge(platform, a, b)
    await platform.publish(recorded(("x", "3002"), ("x_handle", "bobby3002"), text="after merge",
                                    at=BASE + timedelta(hours=3)))
    await eventually(lambda: _count(platform, a, 3))
    r = await _unmerge(platform, a, b)
    assert r.status_code == 200, r.text
    assert sorted(i["value"] for i in r.json()["moved"]) == ["3002", "bobby3002"]
    owner = (await platform.client.get(f"{V}/customers", params={"identifier": "x_handle:bobby3002"},
                                       headers=ADMIN)).json()["items"]
    assert owner[0]["id"] == b
    tb = await platform.timeline(b, department="interactions")
    assert any("after merge" in i["summary"] for i in tb["items"])


async def test_an_unmerge_that_would_move_no_identifier_is_a_422_naming_the_field(platform):
    await platform.publish(recorded(("x", "9801"), at=BASE), recorded(("x", "9802"), at=BASE + timedelta(hours=1)))
    a, b = await platform.customer_by("x:9801"), await platform.customer_by("x:9802")
    await _merge(platform, a, b)
    r = await _unmerge(platform, a, b, identifiers=[])
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "identifiers"
    # B's only identifier is moved to A by hand: by default nothing of B's is left to give back
    r = await _unmerge(platform, a, b, identifiers=["x:9802"])
    assert r.status_code == 200
    await _merge(platform, a, b)
    r = await _unmerge(platform, a, b)
    assert r.status_code == 200  # x:9802 went back with B and came again: still B's
    await _merge(platform, a, b)
    with platform.host.state.runtimes["identity"].sessions() as session:
        session.execute(IdentifierLink.__table__.update().where(IdentifierLink.value == "9802")
                        .values(origin_customer_id=a))
        session.commit()
    r = await _unmerge(platform, a, b)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "identifiers"
    g = (await platform.client.get(f"{V}/customers/{b}", headers=ADMIN)).json()
    assert g["id"] == a  # nothing changed
