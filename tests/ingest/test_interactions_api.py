"""The canonical interaction API: one item, a JSON array, NDJSON; reading back; enrichment
without recording; scopes; limits; back-pressure. Real HTTP through the ASGI app."""

from __future__ import annotations

import copy

import orjson

from socialzone_common.events.common import Author, Identifier
from socialzone_common.events.ingest import InteractionRecorded

from tests.conftest import bearer
from tests.ingest.conftest import READER, WRITER, bus_events, outbox_events, serving, stored

ADMIN = bearer("admin")


def post_item(n: int = 1, **changes) -> dict:
    item = {
        "source": "x", "kind": "post", "external_id": f"179000000000000000{n}",
        "occurred_at": "2026-11-20T09:30:00Z", "url": f"https://x.com/roadie_rita/status/179000000000000000{n}",
        "author": {"identifiers": [{"type": "x", "value": "5150"}, {"type": "x_handle", "value": "@Roadie_Rita"}],
                   "display_name": "Rita on the road", "followers": 310},
        "text": "@acme the anvil I ordered arrived dented, again #fail https://pics.example/anvil",
        "language": None, "conversation_id": None, "in_reply_to": None, "metrics": {"likes": 2, "reposts": 1},
    }
    item.update(changes)
    return item


async def test_one_interaction_is_recorded_enriched_and_published_keyed_by_its_author(client):
    response = await client.post("/ingest/v1/interactions", json=post_item(), headers=WRITER)

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "accepted"
    interaction_id = body["interaction_id"]

    read = await client.get(f"/ingest/v1/interactions/{interaction_id}", headers=READER)
    assert read.status_code == 200
    interaction = read.json()["interaction"]
    assert interaction["text"].startswith("@acme the anvil")
    assert interaction["author"]["identifiers"] == [{"type": "x", "value": "5150", "verified": None},
                                                    {"type": "x_handle", "value": "roadie_rita", "verified": None}]
    assert "#fail" in interaction["enrichment"]["hashtags"] or "fail" in interaction["enrichment"]["hashtags"]
    assert "@acme" in interaction["enrichment"]["mentions"]

    events = await bus_events(client, "zone.interactions.raw", 1)
    assert [e.type for e in events] == ["ingest.interaction.recorded"]
    author_key = Author(identifiers=(Identifier(type="x", value="5150"),)).key
    assert events[0].subject == author_key and events[0].partitionkey == author_key
    payload = InteractionRecorded.model_validate(events[0].data)
    assert payload.interaction.interaction_id == interaction_id
    assert payload.interaction.enrichment.mentions


async def test_the_same_post_delivered_twice_is_one_interaction_and_one_event(client):
    first = await client.post("/ingest/v1/interactions", json=post_item(), headers=WRITER)
    again = await client.post("/ingest/v1/interactions", json=post_item(metrics={"likes": 9}), headers=WRITER)

    assert again.status_code == 202
    assert again.json() == {"interaction_id": first.json()["interaction_id"], "status": "duplicate"}
    assert len(outbox_events(client, "ingest.interaction.recorded")) == 1
    assert len(stored(client)) == 1


async def test_a_json_array_reports_each_item_and_writes_only_the_valid_ones(client):
    bad = post_item(2)
    bad["author"]["identifiers"][0]["value"] = ""
    also_bad = post_item(3, occurred_at="yesterday")
    batch = [post_item(1), bad, post_item(4), also_bad, post_item(1)]

    response = await client.post("/ingest/v1/interactions", json=batch, headers=WRITER)

    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (2, 1, 2)
    statuses = [r["status"] for r in body["results"]]
    assert statuses == ["accepted", "rejected", "accepted", "rejected", "duplicate"]
    assert body["results"][1]["errors"][0]["field"] == "author.identifiers[0].value"
    assert body["results"][3]["errors"][0]["field"] == "occurred_at"
    assert body["results"][4]["interaction_id"] == body["results"][0]["interaction_id"]
    assert len(stored(client)) == 2
    assert len(outbox_events(client, "ingest.interaction.recorded")) == 2


async def test_ndjson_loads_a_large_batch_and_names_the_line_of_a_bad_item(client):
    lines = [orjson.dumps(post_item(n, external_id=f"ndjson-{n}")) for n in range(300)]
    lines.insert(120, b'{"source": "x", "kind": "post"')  # cut short
    body = b"\n".join(lines) + b"\n"

    response = await client.post("/ingest/v1/interactions", content=body,
                                 headers={**WRITER, "Content-Type": "application/x-ndjson"})

    assert response.status_code == 202, response.text
    result = response.json()
    assert (result["accepted"], result["rejected"]) == (300, 1)
    rejected = [r for r in result["results"] if r["status"] == "rejected"]
    assert rejected[0]["line"] == 121
    assert "not valid JSON" in rejected[0]["errors"][0]["message"]
    assert len(outbox_events(client, "ingest.interaction.recorded")) == 300


async def test_an_invalid_interaction_is_a_422_naming_the_field_and_writes_nothing(client):
    cases = {
        "author.identifiers[0].value": lambda i: i["author"]["identifiers"][0].update(value=""),
        "kind": lambda i: i.update(kind="tweet"),
        "occurred_at": lambda i: i.update(occurred_at="2026-11-20T09:30:00"),  # no zone
        "author.identifiers": lambda i: i["author"].update(identifiers=[]),
        "extrenal_id": lambda i: i.update(extrenal_id="1"),
        "transaction.currency": lambda i: i.update(kind="transaction",
                                                   transaction={"type": "order", "amount": "10.00", "currency": "EURO"}),
        "language": lambda i: i.update(language="english please"),
    }
    for field, spoil in cases.items():
        item = copy.deepcopy(post_item())
        spoil(item)
        response = await client.post("/ingest/v1/interactions", json=item, headers=WRITER)
        assert response.status_code == 422, (field, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["errors"][0]["field"] == field, problem
        assert problem["detail"].startswith(field)
    assert stored(client) == []
    assert outbox_events(client) == []


async def test_an_email_or_phone_that_cannot_be_normalized_is_refused(client):
    item = post_item(source="email", kind="email", external_id="<m1@mail.example>",
                     author={"identifiers": [{"type": "email", "value": "Jane.Doe@Mail.Example"},
                                             {"type": "phone", "value": "0612345678"}]})
    response = await client.post("/ingest/v1/interactions", json=item, headers=WRITER)

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "author.identifiers[1].value"
    assert "+country code" in response.json()["errors"][0]["message"]

    item["author"]["identifiers"][1]["value"] = "+33 6 12 34 56 78"
    response = await client.post("/ingest/v1/interactions", json=item, headers=WRITER)
    assert response.status_code == 202
    recorded = outbox_events(client, "ingest.interaction.recorded")[0][1].interaction
    assert [(i.type, i.value) for i in recorded.author.identifiers] == [
        ("email", "jane.doe@mail.example"), ("phone", "+33612345678")]


async def test_a_batch_where_every_item_is_invalid_is_a_422_with_each_reason(client):
    response = await client.post("/ingest/v1/interactions", headers=WRITER,
                                 json=[post_item(1, kind="tweet"), post_item(2, source="")])
    assert response.status_code == 422
    problem = response.json()
    assert [e["field"] for e in problem["errors"]] == ["[0].kind", "[1].source"]
    assert stored(client) == []


async def test_a_crm_transaction_keeps_amount_currency_and_items(client):
    item = {"source": "crm", "kind": "transaction", "external_id": "ORD-2026-0042",
            "occurred_at": "2026-11-19T16:05:00+01:00",
            "author": {"identifiers": [{"type": "crm", "value": "C-778"}, {"type": "email", "value": "wile@coyote.example"}],
                       "display_name": "Wile E.", "attributes": {"given_name": "Wile", "surname": "Coyote",
                                                                  "city": "Tucson", "country": "us"}},
            "transaction": {"type": "order", "amount": "149.90", "currency": "usd",
                            "items": [{"sku": "ANV-1", "name": "Anvil", "quantity": 1, "unit_price": "149.90"}]}}
    response = await client.post("/ingest/v1/interactions", json=item, headers=WRITER)

    assert response.status_code == 202, response.text
    event = outbox_events(client, "ingest.interaction.recorded")[0][0]
    data = event.data["interaction"]
    assert data["transaction"] == {"type": "order", "amount": "149.90", "currency": "USD",
                                   "items": [{"sku": "ANV-1", "name": "Anvil", "quantity": 1, "unit_price": "149.90"}]}
    assert data["author"]["attributes"]["country"] == "US"


async def test_a_very_long_text_is_cut_and_flagged(client):
    response = await client.post("/ingest/v1/interactions", json=post_item(text="a" * 12_000), headers=WRITER)
    assert response.status_code == 202
    interaction = outbox_events(client, "ingest.interaction.recorded")[0][1].interaction
    assert len(interaction.text) == 10_000 and interaction.truncated


async def test_an_item_without_external_id_is_deduplicated_by_its_content(client):
    item = post_item(external_id=None, source="web", kind="comment")
    first = await client.post("/ingest/v1/interactions", json=item, headers=WRITER)
    again = await client.post("/ingest/v1/interactions", json=item, headers=WRITER)
    assert again.json() == {"interaction_id": first.json()["interaction_id"], "status": "duplicate"}


async def test_enrich_returns_the_enrichment_and_records_nothing(client):
    response = await client.post("/ingest/v1/enrich", headers=READER,
                                 json={"text": "Loving the new RoadRunner 3000 from @acme! #speed"})
    assert response.status_code == 200
    enrichment = response.json()["enrichment"]
    assert "@acme" in enrichment["mentions"]
    assert stored(client) == [] and outbox_events(client) == []


async def test_writes_need_the_ingest_write_scope_and_reads_ingest_read(client):
    no_key = await client.post("/ingest/v1/interactions", json=post_item())
    reader = await client.post("/ingest/v1/interactions", json=post_item(), headers=READER)
    other = await client.post("/ingest/v1/interactions", json=post_item(), headers=bearer("care_agent"))
    writer_reads = await client.get("/ingest/v1/interactions/nope", headers=WRITER)

    assert no_key.status_code == 401
    assert reader.status_code == 403 and "ingest:write" in reader.json()["detail"]
    assert other.status_code == 403
    assert writer_reads.status_code == 404  # write implies read
    assert stored(client) == []


async def test_an_unknown_interaction_is_a_404_problem(client):
    response = await client.get("/ingest/v1/interactions/no-such-id", headers=READER)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_recorded_interactions_are_listed_newest_first_page_by_page(client):
    await client.post("/ingest/v1/interactions", json=[post_item(n) for n in range(5)], headers=WRITER)
    seen, cursor = [], None
    while True:
        params = {"limit": 2, "source": "x", **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/ingest/v1/interactions", params=params, headers=READER)).json()
        seen += [i["interaction"]["interaction_id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 5
    bad = await client.get("/ingest/v1/interactions", params={"cursor": "garbage"}, headers=READER)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "cursor"


async def test_a_body_over_the_size_limit_is_a_413_and_writes_nothing(ingest_settings):
    small = ingest_settings.model_copy(update={"ingest_max_payload_bytes": 4096})
    async with serving(small) as client:
        batch = [post_item(n, text="x" * 500) for n in range(20)]
        response = await client.post("/ingest/v1/interactions", json=batch, headers=WRITER)

        async def chunks():  # no Content-Length: the limit holds while streaming
            for item in batch:
                yield orjson.dumps(item)

        streamed = await client.post("/ingest/v1/interactions", content=chunks(),
                                     headers={**WRITER, "Content-Type": "application/x-ndjson"})
        assert stored(client) == []
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert streamed.status_code == 413


async def test_too_many_items_in_one_request_is_a_413(ingest_settings):
    few = ingest_settings.model_copy(update={"ingest_max_batch_items": 3})
    async with serving(few) as client:
        response = await client.post("/ingest/v1/interactions", json=[post_item(n) for n in range(4)],
                                     headers=WRITER)
        assert stored(client) == []
    assert response.status_code == 413


async def test_a_full_outbox_answers_429_with_retry_after_and_accepts_again_once_drained(ingest_settings):
    tight = ingest_settings.model_copy(update={"ingest_backlog_limit": 3, "ingest_retry_after_s": 7,
                                               "run_relay": False})
    async with serving(tight) as client:
        first = await client.post("/ingest/v1/interactions", json=[post_item(n) for n in range(4)], headers=WRITER)
        refused = await client.post("/ingest/v1/interactions", json=post_item(9), headers=WRITER)
        assert len(outbox_events(client, "ingest.interaction.recorded")) == 4  # nothing accepted was dropped
        await client.runtime.relay.publish_pending()
        accepted = await client.post("/ingest/v1/interactions", json=post_item(9), headers=WRITER)
    assert first.status_code == 202
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "7"
    assert refused.json()["outbox_backlog"] == 4
    assert accepted.status_code == 202


async def test_the_recorded_interaction_carries_sentiment_intents_and_the_configured_brands(client):
    response = await client.post("/ingest/v1/interactions", headers=WRITER, json=post_item(
        text="@acme my order never arrived, third time this month. Thinking of switching to @globex"))
    assert response.status_code == 202
    enrichment = outbox_events(client, "ingest.interaction.recorded")[0][1].interaction.enrichment
    assert enrichment.language == "en"
    assert enrichment.sentiment.label == "negative"
    assert "complaint" in enrichment.intents
    assert {(b.name, b.kind) for b in enrichment.brands} >= {("Acme", "brand"), ("Globex", "competitor")}


async def test_a_single_item_already_deleted_at_its_source_is_answered_ignored(client):
    notice = {"data": {"delete": {"tweet": {"id": "1790000000000000001", "author_id": "5150"},
                                  "event_at": "2026-11-20T10:00:00Z"}}}
    await client.post("/ingest/v1/sources/x", json=notice, headers=WRITER)
    response = await client.post("/ingest/v1/interactions", json=post_item(), headers=WRITER)
    assert response.status_code == 202
    assert response.json()["status"] == "ignored" and "interaction_id" not in response.json()
    assert stored(client) == []


async def test_a_signed_in_author_with_a_verified_email_and_a_crm_system_id_reaches_identity_as_sent(client):
    item = post_item()
    item["source"], item["kind"], item["external_id"] = "web", "contact", "signup-77"
    item["author"] = {"identifiers": [{"type": "crm:shop", "value": "C-77"},
                                      {"type": "email", "value": "Rita@Example.NET", "verified": True}],
                      "authenticated": True}
    response = await client.post("/ingest/v1/interactions", json=item, headers=WRITER)

    assert response.status_code == 202, response.text
    [event] = await bus_events(client, "zone.interactions.raw", 1)
    author = InteractionRecorded.model_validate(event.data).interaction.author
    assert author.authenticated is True
    assert [(i.type, i.value, i.verified) for i in author.identifiers] == [
        ("crm:shop", "C-77", None), ("email", "rita@example.net", True)]
