"""Reddit listing JSON: posts (t3) and comments (t1), comment trees, deleted and removed
items retract, bad things are named by their listing path."""

from __future__ import annotations

from tests.ingest.conftest import WRITER, outbox_events, stored


def listing(*children: dict) -> dict:
    return {"kind": "Listing", "data": {"after": None, "dist": len(children), "children": list(children)}}


def t3(name: str = "t3_1q2w3e", **changes) -> dict:
    data = {"name": name, "id": name[3:], "author": "beep_beep_fan", "subreddit": "gadgets",
            "title": "Acme rocket skates: worth it?", "selftext": "Thinking of switching from Globex. Opinions?",
            "created_utc": 1763900000.0, "permalink": f"/r/gadgets/comments/{name[3:]}/acme_rocket_skates/",
            "score": 42, "num_comments": 2, "url": "https://www.reddit.com/r/gadgets/comments/1q2w3e/"}
    data.update(changes)
    return {"kind": "t3", "data": data}


def t1(name: str, parent: str, **changes) -> dict:
    data = {"name": name, "id": name[3:], "author": "wile_e", "subreddit": "gadgets", "link_id": "t3_1q2w3e",
            "parent_id": parent, "body": "Mine exploded on the second day.", "created_utc": 1763900500,
            "permalink": f"/r/gadgets/comments/1q2w3e/acme_rocket_skates/{name[3:]}/", "score": -3, "replies": ""}
    data.update(changes)
    return {"kind": "t1", "data": data}


async def test_a_comments_page_records_the_post_and_its_comment_tree(client):
    nested = t1("t1_child1", "t1_top1", author="road_runner", body="Meep meep. Works fine for me.")
    top = t1("t1_top1", "t3_1q2w3e", replies=listing(nested, {"kind": "more", "data": {"count": 3}}))
    page = [listing(t3()), listing(top)]

    response = await client.post("/ingest/v1/sources/reddit", json=page, headers=WRITER)

    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 3
    post, comment, reply = [p.interaction for _, p in outbox_events(client, "ingest.interaction.recorded")]
    assert (post.kind, post.external_id) == ("post", "t3_1q2w3e")
    assert post.text == "Acme rocket skates: worth it?\n\nThinking of switching from Globex. Opinions?"
    assert post.url == "https://www.reddit.com/r/gadgets/comments/1q2w3e/acme_rocket_skates/"
    assert (comment.kind, comment.in_reply_to, comment.conversation_id) == ("comment", "t3_1q2w3e", "t3_1q2w3e")
    assert comment.metrics == {"score": -3}
    assert (reply.in_reply_to, reply.author.identifiers[0].value) == ("t1_top1", "road_runner")


async def test_a_deleted_or_removed_comment_retracts_what_was_recorded(client):
    await client.post("/ingest/v1/sources/reddit", json=listing(t1("t1_gone1", "t3_1q2w3e"),
                                                                 t1("t1_gone2", "t3_1q2w3e")), headers=WRITER)
    later = listing(t1("t1_gone1", "t3_1q2w3e", author="[deleted]", body="[deleted]"),
                    t1("t1_gone2", "t3_1q2w3e", body="[removed]"),
                    t1("t1_never", "t3_1q2w3e", author="[deleted]", body="[deleted]"))
    response = await client.post("/ingest/v1/sources/reddit", json=later, headers=WRITER)

    assert [r["status"] for r in response.json()["results"]] == ["retracted", "retracted", "ignored"]
    reasons = [p.reason for _, p in outbox_events(client, "ingest.interaction.retracted")]
    assert reasons == ["deleted", "moderated"]
    assert all(row.retracted_at is not None for row in stored(client))


async def test_bad_things_in_a_listing_are_named_by_their_path(client):
    no_time = t3("t3_bad1")
    del no_time["data"]["created_utc"]
    response = await client.post("/ingest/v1/sources/reddit", headers=WRITER,
                                 json=listing(t3(), no_time, {"kind": "t5", "data": {}}))
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["accepted", "rejected", "rejected"]
    assert results[1]["errors"][0]["field"] == "data.children[1].data.created_utc"
    assert results[2]["errors"][0]["field"] == "data.children[2].kind"

    not_listing = await client.post("/ingest/v1/sources/reddit", json={"kind": "t3"}, headers=WRITER)
    assert not_listing.status_code == 422
    assert not_listing.json()["errors"][0]["field"] == "data.children"
    assert len(stored(client)) == 1


async def test_the_same_listing_twice_is_recorded_once(client):
    await client.post("/ingest/v1/sources/reddit", json=listing(t3()), headers=WRITER)
    again = await client.post("/ingest/v1/sources/reddit", json=listing(t3(score=99)), headers=WRITER)
    assert again.json()["duplicates"] == 1
    assert len(outbox_events(client, "ingest.interaction.recorded")) == 1


async def test_a_created_utc_out_of_range_is_named_not_a_server_error(client):
    response = await client.post("/ingest/v1/sources/reddit", headers=WRITER,
                                 json=listing(t3("t3_far1", created_utc=1e20), t3("t3_nan1", created_utc="nan")))
    assert response.status_code == 422, response.text
    assert [r["errors"][0]["field"] for r in response.json()["results"]] == [
        "data.children[0].data.created_utc", "data.children[1].data.created_utc"]
    assert stored(client) == []
