"""X (Twitter) API v2 responses in, canonical interactions out; edits are one interaction,
delete notices retract. Fixtures written from the v2 field names."""

from __future__ import annotations

from tests.ingest.conftest import READER, WRITER, bus_events, outbox_events, stored


def v2_response(*posts: dict, users: list[dict] | None = None) -> dict:
    return {"data": list(posts), "includes": {"users": users if users is not None else [DESERT_USER]},
            "meta": {"result_count": len(posts), "newest_id": posts[0]["id"] if posts else None}}


DESERT_USER = {"id": "90210", "username": "Desert_Dora", "name": "Dora of the Dunes",
               "description": "cactus gardener, anvil critic", "location": "Tucson, AZ", "verified": False,
               "public_metrics": {"followers_count": 1288, "following_count": 31, "tweet_count": 5012}}


def complaint(post_id: str = "1857700000000000101", **changes) -> dict:
    post = {
        "id": post_id, "text": "@acme three weeks and still no refund for the broken rocket skates. #neveragain",
        "author_id": "90210", "created_at": "2026-11-18T07:15:42.000Z", "conversation_id": post_id,
        "lang": "en", "edit_history_tweet_ids": [post_id],
        "entities": {"mentions": [{"start": 0, "end": 5, "username": "acme", "id": "11"}],
                     "hashtags": [{"start": 72, "end": 84, "tag": "neveragain"}]},
        "public_metrics": {"retweet_count": 4, "reply_count": 2, "like_count": 17, "quote_count": 0,
                           "bookmark_count": 1, "impression_count": 2210},
    }
    post.update(changes)
    return post


async def test_a_v2_response_becomes_interactions_with_author_details_from_includes(client):
    reply = complaint("1857700000000000102", text="@acme_support did you even read my DM?",
                      conversation_id="1857700000000000101", in_reply_to_user_id="11",
                      referenced_tweets=[{"type": "replied_to", "id": "1857700000000000101"}],
                      edit_history_tweet_ids=["1857700000000000102"], lang="und")
    response = await client.post("/ingest/v1/sources/x", json=v2_response(complaint(), reply), headers=WRITER)

    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 2
    first, second = [p.interaction for _, p in outbox_events(client, "ingest.interaction.recorded")]
    assert first.kind == "mention" and second.kind == "reply"
    assert second.in_reply_to == "1857700000000000101" and second.conversation_id == "1857700000000000101"
    assert second.language is None  # "und" is not a language
    assert first.url == "https://x.com/Desert_Dora/status/1857700000000000101"
    assert [(i.type, i.value) for i in first.author.identifiers] == [("x", "90210"), ("x_handle", "desert_dora")]
    assert first.author.display_name == "Dora of the Dunes" and first.author.followers == 1288
    assert first.author.attributes.location == "Tucson, AZ"
    assert first.metrics == {"likes": 17, "reposts": 4, "replies": 2, "quotes": 0, "bookmarks": 1, "views": 2210}
    assert first.occurred_at.isoformat() == "2026-11-18T07:15:42+00:00"


async def test_an_edited_post_is_one_interaction_keyed_by_its_first_id(client):
    original = complaint("1857700000000000201")
    edited = complaint("1857700000000000205", text="@acme three weeks, still no refund for the rocket skates.",
                       edit_history_tweet_ids=["1857700000000000201", "1857700000000000205"])

    first = await client.post("/ingest/v1/sources/x", json=v2_response(original), headers=WRITER)
    second = await client.post("/ingest/v1/sources/x", json=v2_response(edited), headers=WRITER)

    assert first.json()["results"][0]["status"] == "accepted"
    assert second.json()["results"][0]["status"] == "duplicate"
    assert second.json()["results"][0]["interaction_id"] == first.json()["results"][0]["interaction_id"]
    assert len(outbox_events(client, "ingest.interaction.recorded")) == 1
    assert stored(client)[0].external_id == "1857700000000000201"


async def test_an_edit_seen_before_its_original_is_still_keyed_by_the_first_id(client):
    edited = complaint("1857700000000000305", edit_history_tweet_ids=["1857700000000000301", "1857700000000000305"])
    await client.post("/ingest/v1/sources/x", json=v2_response(edited), headers=WRITER)
    original = await client.post("/ingest/v1/sources/x", json=v2_response(complaint("1857700000000000301")),
                                 headers=WRITER)
    assert original.json()["results"][0]["status"] == "duplicate"
    assert len(stored(client)) == 1


async def test_a_delete_notice_retracts_the_post_removes_its_text_and_publishes_once(client):
    recorded = await client.post("/ingest/v1/sources/x", json=v2_response(complaint()), headers=WRITER)
    interaction_id = recorded.json()["results"][0]["interaction_id"]
    notice = {"data": {"delete": {"tweet": {"id": "1857700000000000101", "author_id": "90210"},
                                  "event_at": "2026-11-18T09:00:00.000Z"}}}

    retracted = await client.post("/ingest/v1/sources/x", json=notice, headers=WRITER)
    repeated = await client.post("/ingest/v1/sources/x", json=notice, headers=WRITER)

    assert retracted.status_code == 202, retracted.text
    assert retracted.json()["results"][0] == {"index": 0, "status": "retracted", "interaction_id": interaction_id,
                                              "path": "data.delete"}
    assert repeated.json()["results"][0]["status"] == "duplicate"
    read = (await client.get(f"/ingest/v1/interactions/{interaction_id}", headers=READER)).json()
    assert read["interaction"]["text"] is None and read["retracted_at"] is not None
    assert read["interaction"]["enrichment"]["hashtags"] == []
    events = await bus_events(client, "zone.interactions.raw", 2)
    assert [e.type for e in events] == ["ingest.interaction.recorded", "ingest.interaction.retracted"]
    assert events[1].partitionkey == events[0].partitionkey  # the retraction follows the post
    assert events[1].data["interaction_id"] == interaction_id and events[1].data["reason"] == "deleted"


async def test_a_delete_notice_naming_a_later_edit_retracts_the_one_interaction(client):
    edited = complaint("1857700000000000405", edit_history_tweet_ids=["1857700000000000401", "1857700000000000405"])
    await client.post("/ingest/v1/sources/x", json=v2_response(edited), headers=WRITER)
    notices = [{"data": {"delete": {"tweet": {"id": "1857700000000000405", "author_id": "90210"},
                                    "event_at": "2026-11-18T09:00:00.000Z"}}},
               {"data": {"withheld": {"tweet": {"id": "1857700000000000405", "author_id": "90210"},
                                      "withheld_in_countries": ["DE"], "event_at": "2026-11-18T09:00:00.000Z"}}}]
    response = await client.post("/ingest/v1/sources/x", json=notices, headers=WRITER)
    assert [r["status"] for r in response.json()["results"]] == ["retracted", "ignored"]
    assert stored(client)[0].retracted_at is not None


async def test_a_delete_notice_for_an_unknown_post_publishes_nothing(client):
    notice = {"data": {"delete": {"tweet": {"id": "1", "author_id": "2"}, "event_at": "2026-11-18T09:00:00Z"}}}
    response = await client.post("/ingest/v1/sources/x", json=notice, headers=WRITER)
    assert response.status_code == 202 and response.json()["ignored"] == 1
    assert outbox_events(client) == []


async def test_bad_posts_are_rejected_naming_the_x_field_and_good_ones_kept(client):
    no_author = complaint("1857700000000000501")
    del no_author["author_id"]
    bad_time = complaint("1857700000000000502", created_at="last tuesday")
    response = await client.post("/ingest/v1/sources/x", headers=WRITER,
                                 json=v2_response(complaint("1857700000000000503"), no_author, bad_time))
    assert response.status_code == 202
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["accepted", "rejected", "rejected"]
    assert results[1]["errors"][0]["field"] == "data[1].author_id"
    assert results[2]["errors"][0]["field"] == "data[2].created_at"
    assert len(stored(client)) == 1


async def test_a_payload_that_is_not_a_v2_response_is_a_422_and_writes_nothing(client):
    for body, field in (({"statuses": []}, "data"), ({"data": [{"id": "x1", "text": "hi"}]}, "data[0].id")):
        response = await client.post("/ingest/v1/sources/x", json=body, headers=WRITER)
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == field
    not_json = await client.post("/ingest/v1/sources/x", content=b"{nope", headers=WRITER)
    assert not_json.status_code == 422 and not_json.json()["errors"][0]["field"] == "body"
    assert stored(client) == []


async def test_a_post_without_its_user_in_includes_keeps_the_author_id(client):
    response = await client.post("/ingest/v1/sources/x", json=v2_response(complaint(), users=[]), headers=WRITER)
    assert response.json()["accepted"] == 1
    interaction = outbox_events(client, "ingest.interaction.recorded")[0][1].interaction
    assert [(i.type, i.value) for i in interaction.author.identifiers] == [("x", "90210")]
    assert interaction.url == "https://x.com/i/web/status/1857700000000000101"


async def test_a_post_whose_delete_notice_came_first_is_not_recorded(client):
    notice = {"data": {"delete": {"tweet": {"id": "1857700000000000601", "author_id": "90210"},
                                  "event_at": "2026-11-18T09:00:00.000Z"}}}
    await client.post("/ingest/v1/sources/x", json=notice, headers=WRITER)

    late = await client.post("/ingest/v1/sources/x", json=v2_response(complaint("1857700000000000601"),
                                                                       complaint("1857700000000000602")),
                             headers=WRITER)

    assert [r["status"] for r in late.json()["results"]] == ["ignored", "accepted"]
    assert "deleted at the source" in late.json()["results"][0]["errors"][0]["message"]
    assert [row.external_id for row in stored(client)] == ["1857700000000000602"]
    assert len(outbox_events(client, "ingest.interaction.recorded")) == 1


async def test_a_response_with_no_results_records_nothing_and_is_not_an_error(client):
    response = await client.post("/ingest/v1/sources/x", json={"meta": {"result_count": 0}}, headers=WRITER)
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 0 and stored(client) == []


async def test_a_single_post_withheld_in_some_countries_is_still_a_post(client):
    post = complaint(withheld={"copyright": False, "country_codes": ["DE"]})
    response = await client.post("/ingest/v1/sources/x", json={"data": post}, headers=WRITER)
    assert response.json()["accepted"] == 1
    # the compliance event of the same name records nothing
    event = {"data": {"withheld": {"tweet": {"id": "1857700000000000101", "author_id": "90210"},
                                   "withheld_in_countries": ["DE"], "event_at": "2026-11-18T09:00:00.000Z"}}}
    notice = await client.post("/ingest/v1/sources/x", json=event, headers=WRITER)
    assert notice.json()["ignored"] == 1 and len(stored(client)) == 1
