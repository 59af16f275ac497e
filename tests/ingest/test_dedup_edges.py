"""De-duplication and bad input at the edges: an edited post under any of its ids, items
without an external id, numbers no 64-bit column holds, NUL characters, and concurrent
requests with the same new items in different orders (PostgreSQL)."""

from __future__ import annotations

import asyncio

import pytest

from tests.ingest.conftest import WRITER, outbox_events, serving, stored
from tests.ingest.test_interactions_api import post_item
from tests.ingest.test_x_connector import complaint, v2_response

FIRST, LATER = "1857700000000000201", "1857700000000000205"


def _on(backend: str, settings, request):
    if backend == "sqlite":
        return settings
    pg = request.getfixturevalue("pg_settings")
    return settings.model_copy(update={"database_url": pg.database_url,
                                       "database_schema_prefix": pg.database_schema_prefix})


def canonical(external_id: str) -> dict:
    return {"source": "x", "kind": "post", "external_id": external_id, "occurred_at": "2026-11-18T07:15:42Z",
            "author": {"identifiers": [{"type": "x", "value": "90210"}]}, "text": "the same post"}


async def test_an_edited_post_is_one_interaction_under_its_first_and_its_later_id(client):
    """The edited post (keyed by its first id, its later one an alias) and the same post
    delivered under the later id alone, in one payload and in later requests, are one."""
    edited = complaint(LATER, edit_history_tweet_ids=[FIRST, LATER])
    bare_later = complaint(LATER)
    del bare_later["edit_history_tweet_ids"]
    response = await client.post("/ingest/v1/sources/x", json=v2_response(edited, bare_later), headers=WRITER)
    first, again = response.json()["results"]
    assert (first["status"], again["status"]) == ("accepted", "duplicate")
    assert again["interaction_id"] == first["interaction_id"]

    later = await client.post("/ingest/v1/interactions", json=canonical(LATER), headers=WRITER)
    assert later.json() == {"interaction_id": first["interaction_id"], "status": "duplicate"}
    assert [row.external_id for row in stored(client)] == [FIRST]
    assert len(outbox_events(client, "ingest.interaction.recorded")) == 1

    notice = {"data": {"delete": {"tweet": {"id": LATER, "author_id": "90210"}, "event_at": "2026-11-18T09:00:00Z"}}}
    deleted = (await client.post("/ingest/v1/sources/x", json=notice, headers=WRITER)).json()["results"][0]
    assert (deleted["status"], deleted["interaction_id"]) == ("retracted", first["interaction_id"])


async def test_a_later_id_recorded_first_takes_in_the_edit_history_that_names_it(client):
    """The later id arrived alone first: the edit history that names it is the same
    interaction, and a deletion under the first id finds it."""
    alone = (await client.post("/ingest/v1/interactions", json=canonical(LATER), headers=WRITER)).json()
    edited = complaint(LATER, edit_history_tweet_ids=[FIRST, LATER])
    result = (await client.post("/ingest/v1/sources/x", json=v2_response(edited), headers=WRITER)).json()["results"][0]
    assert result == {"index": 0, "path": "data[0]", "status": "duplicate", "interaction_id": alone["interaction_id"]}
    assert len(stored(client)) == 1 and len(outbox_events(client, "ingest.interaction.recorded")) == 1

    notice = {"data": {"delete": {"tweet": {"id": FIRST, "author_id": "90210"}, "event_at": "2026-11-18T09:00:00Z"}}}
    deleted = (await client.post("/ingest/v1/sources/x", json=notice, headers=WRITER)).json()["results"][0]
    assert (deleted["status"], deleted["interaction_id"]) == ("retracted", alone["interaction_id"])


async def test_items_without_an_external_id_are_one_when_they_say_the_same_as_normalized(client):
    """The stand-in id hashes the normalized identifiers and the instant: ``@Rita`` and
    ``rita``, 10:30+01:00 and 09:30Z are the same; another text is another item."""
    def item(handle: str, at: str, text: str = "where is my parcel?") -> dict:
        return {"source": "web", "kind": "comment", "occurred_at": at, "text": text,
                "author": {"identifiers": [{"type": "x_handle", "value": handle}]}}

    response = await client.post("/ingest/v1/interactions", headers=WRITER, json=[
        item("@Rita", "2026-11-20T10:30:00+01:00"), item("rita", "2026-11-20T09:30:00Z"),
        item("RITA", "2026-11-20T09:30:00.000Z"), item("rita", "2026-11-20T09:30:00Z", "another one")])
    statuses = [(r["status"], r["interaction_id"]) for r in response.json()["results"]]
    assert [s for s, _ in statuses] == ["accepted", "duplicate", "duplicate", "accepted"]
    assert len({i for _, i in statuses[:3]}) == 1 and statuses[3][1] != statuses[0][1]


async def test_counts_no_64_bit_column_holds_are_rejected_naming_the_field(client):
    too_many_followers = post_item(2, author={"identifiers": [{"type": "x", "value": "7"}], "followers": 2**64})
    response = await client.post("/ingest/v1/interactions", headers=WRITER, json=[
        post_item(1), too_many_followers, post_item(3, metrics={"views": 2**63})])
    assert response.status_code == 202, response.text
    ok, followers, views = response.json()["results"]
    assert ok["status"] == "accepted"
    assert followers["status"] == "rejected" and followers["errors"][0]["field"] == "author.followers"
    assert views["status"] == "rejected" and views["errors"][0]["field"] == "metrics.views"
    assert len(stored(client)) == 1


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_a_nul_character_anywhere_is_rejected_naming_the_field(ingest_settings, backend, request):
    """No database column stores U+0000 on PostgreSQL: the item is refused at the door (not
    a 500 for the whole batch here, nor a dead letter in every department later)."""
    with_nul = {
        "external_id": post_item(2, external_id="17900\x00002"),
        "text": post_item(3, text="my order \x00 never came"),
        "author.display_name": post_item(4, author={"identifiers": [{"type": "x", "value": "8"}],
                                                    "display_name": "Rita\x00"}),
        "author.identifiers[0].value": post_item(5, author={"identifiers": [{"type": "x_handle", "value": "ri\x00ta"}]}),
    }
    async with serving(_on(backend, ingest_settings, request)) as client:
        response = await client.post("/ingest/v1/interactions", headers=WRITER,
                                     json=[post_item(1), *with_nul.values(), post_item(6, text=r"a literal \u0000")])
        assert response.status_code == 202, response.text
        first, *refused, literal = response.json()["results"]
        assert first["status"] == "accepted" and literal["status"] == "accepted"
        assert [(r["status"], r["errors"][0]["field"]) for r in refused] == [("rejected", f) for f in with_nul]
        assert "NUL" in refused[0]["errors"][0]["message"]
        assert len(stored(client)) == 2 and len(outbox_events(client, "ingest.interaction.recorded")) == 2


@pytest.mark.postgres
async def test_the_same_new_posts_in_opposite_orders_at_once_are_recorded_once_on_postgresql(
        ingest_settings, pg_settings):
    """Rows go in in key order: in request order, two requests would each wait for the
    other's first row (a deadlock, answered 500)."""
    settings = ingest_settings.model_copy(update={"database_url": pg_settings.database_url,
                                                  "database_schema_prefix": pg_settings.database_schema_prefix})
    async with serving(settings) as client:
        for round_ in range(4):
            batch = [post_item(1, external_id=f"18600000000{round_:03d}{n:05d}") for n in range(60)]
            responses = await asyncio.gather(*[client.post("/ingest/v1/interactions", json=body, headers=WRITER)
                                               for body in (batch, batch[::-1], batch, batch[::-1])])
            assert [r.status_code for r in responses] == [202] * 4, [r.text[:200] for r in responses]
            assert sum(r.json()["accepted"] for r in responses) == 60
        assert len(stored(client)) == 240 and len(outbox_events(client, "ingest.interaction.recorded")) == 240
