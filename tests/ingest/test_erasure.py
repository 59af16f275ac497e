"""Erasure: identity's erasure request (zone.privacy) purges the personal data of the
customer's interactions — found through identity's attributions — and ingest answers
ingest.erasure.completed through its outbox."""

from __future__ import annotations

import uuid

import pytest

from socialzone_common.bus import OutgoingMessage
from socialzone_common.envelope import now_utc
from socialzone_common.events.common import Interaction
from socialzone_common.events.identity import InteractionAttributed
from socialzone_common.events.privacy import ErasureRequested
from socialzone_ingest.consumers import on_attributions, on_erasure_requested

from tests.ingest.conftest import READER, WRITER, bus_events, outbox_events, stored, wait_for


def item(n: int, author: str, text: str) -> dict:
    return {"source": "x", "kind": "post", "external_id": f"55500{n}", "occurred_at": "2026-11-20T09:30:00Z",
            "url": f"https://x.com/someone/status/55500{n}",
            "author": {"identifiers": [{"type": "x", "value": author}, {"type": "x_handle", "value": f"h{author}"}],
                       "display_name": f"Person {author}", "followers": 10,
                       "attributes": {"given_name": "Pat", "city": "Springfield"}},
            "text": text}


async def attribute(client, interaction_id: str, customer_id: str) -> None:
    row = next(r for r in stored(client) if r.id == interaction_id)
    interaction = Interaction.model_validate_json(row.document)
    event = InteractionAttributed(customer_id=customer_id, interaction=interaction)
    await client.host_app.state.bus.publish([OutgoingMessage(
        "zone.interactions", event.to_envelope(source="socialzone/identity"))])


async def request_erasure(client, customer_id: str, merged_ids=()) -> str:
    erasure_id = str(uuid.uuid4())
    event = ErasureRequested(erasure_id=erasure_id, customer_id=customer_id, requested_at=now_utc(),
                             merged_ids=tuple(merged_ids))
    await client.host_app.state.bus.publish([OutgoingMessage("zone.privacy", event.to_envelope(
        source="socialzone/identity"))])
    return erasure_id


async def test_an_erasure_request_purges_the_customers_interactions_and_answers_completed(client):
    recorded = (await client.post("/ingest/v1/interactions", headers=WRITER, json=[
        item(1, "111", "my address is 12 Elm St, call me"), item(2, "111", "still waiting"),
        item(3, "222", "someone else entirely"), item(4, "333", "a merged profile's post")])).json()
    ids = [r["interaction_id"] for r in recorded["results"]]
    await attribute(client, ids[0], "cus_A")   # the second post of the same author is not attributed yet
    await attribute(client, ids[2], "cus_B")
    await attribute(client, ids[3], "cus_OLD")  # merged into cus_A since
    await wait_for(lambda: sum(r.customer_id is not None for r in stored(client)) == 3)

    erasure_id = await request_erasure(client, "cus_A", merged_ids=["cus_OLD"])
    await wait_for(lambda: outbox_events(client, "ingest.erasure.completed"))

    (envelope, completed), = outbox_events(client, "ingest.erasure.completed")
    assert (completed.erasure_id, completed.customer_id, completed.records_purged) == (erasure_id, "cus_A", 3)
    assert envelope.subject == "cus_A"
    for interaction_id in (ids[0], ids[1], ids[3]):
        read = (await client.get(f"/ingest/v1/interactions/{interaction_id}", headers=READER)).json()
        assert read["erased_at"] is not None
        interaction = read["interaction"]
        assert interaction["text"] is None and interaction["url"] is None
        assert interaction["author"]["display_name"] is None and interaction["author"]["attributes"] is None
        assert [i["type"] for i in interaction["author"]["identifiers"]] == ["erased"]
    untouched = (await client.get(f"/ingest/v1/interactions/{ids[2]}", headers=READER)).json()
    assert untouched["interaction"]["text"] == "someone else entirely" and untouched["erased_at"] is None
    on_bus = await bus_events(client, "zone.privacy", 2)
    assert [e.type for e in on_bus] == ["identity.customer.erasure_requested", "ingest.erasure.completed"]


async def test_an_erasure_for_a_customer_ingest_never_saw_completes_with_nothing_purged(client):
    await request_erasure(client, "cus_nobody")
    await wait_for(lambda: outbox_events(client, "ingest.erasure.completed"))
    assert outbox_events(client, "ingest.erasure.completed")[0][1].records_purged == 0


async def test_an_attribution_that_arrives_after_the_erasure_is_purged_as_it_arrives(client):
    recorded = (await client.post("/ingest/v1/interactions", headers=WRITER, json=item(5, "444", "late one"))).json()
    await request_erasure(client, "cus_late")
    await wait_for(lambda: outbox_events(client, "ingest.erasure.completed"))

    await attribute(client, recorded["interaction_id"], "cus_late")

    await wait_for(lambda: stored(client)[0].erased_at is not None)
    assert Interaction.model_validate_json(stored(client)[0].document).text is None


async def test_a_redelivered_erasure_request_is_answered_once(client):
    erasure_id = str(uuid.uuid4())
    event = ErasureRequested(erasure_id=erasure_id, customer_id="cus_twice", requested_at=now_utc())
    envelope = event.to_envelope(source="socialzone/identity")
    await client.host_app.state.bus.publish([OutgoingMessage("zone.privacy", envelope)])
    await client.host_app.state.bus.publish([OutgoingMessage("zone.privacy", envelope)])
    await wait_for(lambda: client.runtime.status()["consumers"][1]["duplicates"] == 1)
    assert len(outbox_events(client, "ingest.erasure.completed")) == 1


async def test_after_a_merge_the_survivors_erasure_covers_the_merged_customers_interactions(client):
    from socialzone_common.events.identity import CustomerMerged

    recorded = (await client.post("/ingest/v1/interactions", headers=WRITER, json=item(6, "666", "old profile"))).json()
    await attribute(client, recorded["interaction_id"], "cus_merged")
    await wait_for(lambda: stored(client)[0].customer_id == "cus_merged")
    merged = CustomerMerged(survivor_id="cus_survivor", merged_id="cus_merged", rule="strong_identifier")
    await client.host_app.state.bus.publish([OutgoingMessage("zone.customers", merged.to_envelope(
        source="socialzone/identity"))])
    await wait_for(lambda: stored(client)[0].customer_id == "cus_survivor")

    await request_erasure(client, "cus_survivor")  # identity did not list the merged id this time

    await wait_for(lambda: stored(client)[0].erased_at is not None)
    assert outbox_events(client, "ingest.erasure.completed")[0][1].records_purged == 1


@pytest.mark.postgres
async def test_an_erasure_committing_while_an_attribution_is_in_flight_still_purges_it_on_postgresql(
        ingest_settings, pg_settings):
    """The attribution of a customer's first interaction and that customer's erasure at the
    same moment (two topics, two consumers): the erasure waits for the attribution and then
    finds the interaction. Without the lock each missed the other and the text stayed."""
    import threading

    from tests.ingest.conftest import serving

    settings = ingest_settings.model_copy(update={"database_url": pg_settings.database_url,
                                                  "database_schema_prefix": pg_settings.database_schema_prefix})
    async with serving(settings) as client:
        response = await client.post("/ingest/v1/interactions", headers=WRITER, json=item(9, "909", "my secret"))
        interaction_id = response.json()["interaction_id"]
        [row] = stored(client)
        attributed = InteractionAttributed(customer_id="cus_racing", interaction=Interaction.model_validate_json(
            row.document)).to_envelope(source="socialzone/identity")
        erasure = ErasureRequested(erasure_id=str(uuid.uuid4()), customer_id="cus_racing",
                                   requested_at=now_utc()).to_envelope(source="socialzone/identity")
        sessions = client.runtime.sessions
        attributing = sessions()

        def erase() -> None:
            with sessions() as session:
                on_erasure_requested(session, erasure)
                session.commit()

        eraser = threading.Thread(target=erase)
        try:
            on_attributions(attributing, [attributed])  # not committed yet
            eraser.start()
            eraser.join(timeout=0.5)
            waited = eraser.is_alive()  # for the attribution of the same customer
            attributing.commit()
        finally:
            attributing.close()  # (a rollback if it failed: nothing left holding locks)
        eraser.join(timeout=10)
        assert waited
        [row] = stored(client)
        assert row.id == interaction_id and row.customer_id == "cus_racing"
        assert row.erased_at is not None and "my secret" not in row.document
