"""Meta webhooks: the verification handshake, signed deliveries of Page feed comments and
posts, Messenger messages and Instagram comments; remove events retract; a bad or
missing signature is a 401 and records nothing."""

from __future__ import annotations

from tests.ingest.conftest import META_SECRET, META_VERIFY, READER, bus_events, dumps, outbox_events, sign, stored

PAGE_ID = "424242000001"


def page_delivery(*changes: dict, messaging: list | None = None) -> dict:
    entry = {"id": PAGE_ID, "time": 1763980000, "changes": [{"field": "feed", "value": v} for v in changes]}
    if messaging is not None:
        entry["messaging"] = messaging
    return {"object": "page", "entry": [entry]}


def comment(comment_id: str = "800100_900201", **changes) -> dict:
    value = {"item": "comment", "verb": "add", "post_id": f"{PAGE_ID}_800100", "comment_id": comment_id,
             "parent_id": f"{PAGE_ID}_800100", "created_time": 1763979000,
             "from": {"id": "6200551", "name": "Marvin Martian"},
             "message": "Where can I buy the Illudium Q-36 in Europe?"}
    value.update(changes)
    return value


async def deliver(client, payload, *, secret: str | None = META_SECRET, header: str = "X-Hub-Signature-256"):
    body = dumps(payload)
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers[header] = sign(secret, body)
    return await client.post("/ingest/webhooks/meta", content=body, headers=headers)


async def test_the_verification_handshake_echoes_the_challenge_only_with_our_token(client):
    good = await client.get("/ingest/webhooks/meta", params={"hub.mode": "subscribe", "hub.verify_token": META_VERIFY,
                                                             "hub.challenge": "1158201444"})
    wrong = await client.get("/ingest/webhooks/meta", params={"hub.mode": "subscribe", "hub.verify_token": "guess",
                                                              "hub.challenge": "1158201444"})
    bare = await client.get("/ingest/webhooks/meta")

    assert good.status_code == 200 and good.text == "1158201444"
    assert wrong.status_code == 403 and bare.status_code == 403


async def test_a_signed_page_comment_is_recorded_as_a_comment_on_its_post(client):
    response = await deliver(client, page_delivery(comment()))

    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1
    interaction = outbox_events(client, "ingest.interaction.recorded")[0][1].interaction
    assert (interaction.source, interaction.kind, interaction.external_id) == ("facebook", "comment", "800100_900201")
    assert interaction.conversation_id == f"{PAGE_ID}_800100"
    assert [(i.type, i.value) for i in interaction.author.identifiers] == [("facebook", "6200551")]
    assert interaction.author.display_name == "Marvin Martian"
    assert interaction.occurred_at.isoformat() == "2025-11-24T10:10:00+00:00"


async def test_a_delivery_with_a_bad_or_missing_signature_is_401_and_records_nothing(client):
    forged = await deliver(client, page_delivery(comment()), secret="not-the-app-secret")
    missing = await deliver(client, page_delivery(comment()), secret=None)
    body = dumps(page_delivery(comment()))
    tampered = await client.post("/ingest/webhooks/meta", content=body.replace(b"Europe", b"Mars"),
                                 headers={"X-Hub-Signature-256": sign(META_SECRET, body)})

    for response in (forged, missing, tampered):
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
    assert stored(client) == [] and outbox_events(client) == []


async def test_a_redelivered_webhook_is_one_interaction(client):
    await deliver(client, page_delivery(comment()))
    again = await deliver(client, page_delivery(comment(), comment(verb="edited", message="edited text")))
    assert [r["status"] for r in again.json()["results"]] == ["duplicate", "duplicate"]
    assert len(outbox_events(client, "ingest.interaction.recorded")) == 1


async def test_a_remove_event_retracts_the_comment_and_its_text_goes(client):
    recorded = await deliver(client, page_delivery(comment()))
    interaction_id = recorded.json()["results"][0]["interaction_id"]

    removed = await deliver(client, page_delivery({"item": "comment", "verb": "remove", "comment_id": "800100_900201",
                                                   "post_id": f"{PAGE_ID}_800100", "created_time": 1763990000,
                                                   "from": {"id": "6200551"}}))

    assert removed.json()["results"][0]["status"] == "retracted"
    read = (await client.get(f"/ingest/v1/interactions/{interaction_id}", headers=READER)).json()
    assert read["interaction"]["text"] is None
    events = await bus_events(client, "zone.interactions.raw", 2)
    assert events[1].type == "ingest.interaction.retracted"
    assert events[1].data["retracted_at"].startswith("2025-11-24T13:13:20")


async def test_page_posts_messenger_messages_and_what_the_page_itself_said(client):
    post = {"item": "status", "verb": "add", "post_id": f"{PAGE_ID}_800300", "created_time": 1763979100,
            "from": {"id": "6200777", "name": "Granny"}, "message": "Tweety says hi to the whole team"}
    own_reply = comment("800100_900299", **{"from": {"id": PAGE_ID, "name": "Acme"}}, message="Thanks Marvin!")
    reaction = {"item": "reaction", "verb": "add", "reaction_type": "like", "post_id": f"{PAGE_ID}_800100",
                "from": {"id": "6200888"}}
    messaging = [
        {"sender": {"id": "7300112"}, "recipient": {"id": PAGE_ID}, "timestamp": 1763979200123,
         "message": {"mid": "m_AbCdEf-001", "text": "I want to cancel my subscription"}},
        {"sender": {"id": PAGE_ID}, "recipient": {"id": "7300112"}, "timestamp": 1763979300000,
         "message": {"mid": "m_AbCdEf-002", "text": "Sorry to hear that", "is_echo": True}},
        {"sender": {"id": "7300112"}, "recipient": {"id": PAGE_ID}, "timestamp": 1763979300001,
         "read": {"watermark": 1763979300000}},
    ]
    response = await deliver(client, page_delivery(post, own_reply, reaction, messaging=messaging))

    assert response.status_code == 200, response.text
    assert [r["status"] for r in response.json()["results"]] == [
        "accepted", "ignored", "ignored", "accepted", "ignored", "ignored"]
    status, message = [p.interaction for _, p in outbox_events(client, "ingest.interaction.recorded")]
    assert (status.kind, status.text) == ("post", "Tweety says hi to the whole team")
    assert (message.kind, message.source, message.external_id) == ("direct_message", "facebook", "m_AbCdEf-001")
    assert message.occurred_at.isoformat() == "2025-11-24T10:13:20.123000+00:00"


async def test_an_instagram_comment_is_recorded_with_the_commenter_handle(client):
    delivery = {"object": "instagram", "entry": [{"id": "1789000111", "time": 1763979400, "changes": [
        {"field": "comments", "value": {"id": "17950011223344", "text": "my order is 2 weeks late 😡",
                                        "from": {"id": "3301", "username": "Sylvester.Cat"},
                                        "media": {"id": "18000011", "media_product_type": "FEED"}}}]}]}
    response = await deliver(client, delivery)
    assert response.status_code == 200, response.text
    interaction = outbox_events(client, "ingest.interaction.recorded")[0][1].interaction
    assert (interaction.source, interaction.kind) == ("instagram", "comment")
    assert [(i.type, i.value) for i in interaction.author.identifiers] == [
        ("instagram", "3301"), ("instagram_handle", "sylvester.cat")]
    assert interaction.in_reply_to == "18000011"


async def test_a_signed_delivery_with_bad_items_names_the_meta_field(client):
    no_from = comment()
    del no_from["from"]
    bad_time = comment("800100_900202", created_time="soon")
    response = await deliver(client, page_delivery(no_from, bad_time))
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == [
        "entry[0].changes[0].value.from", "entry[0].changes[1].value.created_time"]
    assert stored(client) == []
    wrong_object = await deliver(client, {"object": "whatsapp_business_account", "entry": []})
    assert wrong_object.status_code == 422 and wrong_object.json()["errors"][0]["field"] == "object"


async def test_without_a_configured_app_secret_every_delivery_is_refused(ingest_settings):
    from tests.ingest.conftest import serving

    unconfigured = ingest_settings.model_copy(update={"meta_app_secret": None, "meta_verify_token": None})
    async with serving(unconfigured) as client:
        response = await deliver(client, page_delivery(comment()))
        handshake = await client.get("/ingest/webhooks/meta", params={
            "hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1"})
        assert stored(client) == []
    assert response.status_code == 401 and handshake.status_code == 403


async def test_a_signature_with_non_ascii_characters_is_a_401(client):
    body = dumps(page_delivery(comment()))
    response = await client.post("/ingest/webhooks/meta", content=body, headers={
        "Content-Type": "application/json", "X-Hub-Signature-256": "sha256=\xe9".encode("latin-1")})
    assert response.status_code == 401
    assert stored(client) == []


async def test_an_instagram_comment_without_the_entry_time_names_the_entry_time(client):
    value = {"id": "17950011223345", "text": "Acme!", "from": {"id": "3301", "username": "sylvester.cat"}}
    for n, time in enumerate((None, 1e20)):  # missing, or out of range
        entry = {"id": "1789000111", "changes": [{"field": "comments", "value": value}],
                 **({"time": time} if time is not None else {})}
        response = await deliver(client, {"object": "instagram", "entry": [entry]})
        assert response.status_code == 422, (n, response.text)
        assert response.json()["errors"][0]["field"] == "entry[0].time"
    late_message = await deliver(client, page_delivery(messaging=[
        {"sender": {"id": "6200551"}, "recipient": {"id": PAGE_ID}, "timestamp": 1e20,
         "message": {"mid": "m_1", "text": "hello"}}]))
    assert late_message.status_code == 422
    assert late_message.json()["errors"][0]["field"] == "entry[0].messaging[0].timestamp"
    assert stored(client) == []
