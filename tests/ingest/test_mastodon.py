"""Mastodon: statuses from a signed server webhook, and from polling an instance's hashtag
and account timelines — against a local Mastodon-like server on a loopback port."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from fastapi import FastAPI, HTTPException, Request

from socialzone_ingest.pollers import poll_mastodon
from tests.ingest.conftest import (
    MASTODON_SECRET, WRITER, dumps, http_server, outbox_events, serving, sign, stored, wait_for,
)

INSTANCE = "toot.example"
START = datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc)


def status(n: int, *, content: str | None = None, acct: str = "dora", **changes) -> dict:
    value = {
        "id": str(110000000000000000 + n), "uri": f"https://{INSTANCE}/users/{acct}/statuses/{n}",
        "url": f"https://{INSTANCE}/@{acct}/{n}", "created_at": (START + timedelta(minutes=n)).isoformat(),
        "content": content or f"<p>Day {n} of waiting for my <a href=\"https://{INSTANCE}/tags/acme\" "
                              f"class=\"mention hashtag\">#<span>acme</span></a> parcel</p>",
        "spoiler_text": "", "language": "en", "visibility": "public", "in_reply_to_id": None,
        "replies_count": 0, "reblogs_count": n % 3, "favourites_count": n % 5, "reblog": None,
        "account": {"id": "77", "username": acct, "acct": acct, "url": f"https://{INSTANCE}/@{acct}",
                    "display_name": "Dora Explorer", "followers_count": 58, "note": "<p>maps &amp; parcels</p>",
                    "avatar": f"https://{INSTANCE}/avatars/77.png"},
        "tags": [{"name": "acme", "url": f"https://{INSTANCE}/tags/acme"}], "mentions": [],
    }
    value.update(changes)
    return value


async def deliver(client, payload, secret=MASTODON_SECRET):
    body = dumps(payload)
    headers = {"Content-Type": "application/json"}
    if secret:
        headers["X-Hub-Signature"] = sign(secret, body)
    return await client.post("/ingest/webhooks/mastodon", content=body, headers=headers)


async def test_a_signed_webhook_status_becomes_plain_text_by_its_author(client):
    html = ('<p><span class="h-card"><a href="https://toot.example/@acme" class="u-url mention">@<span>acme</span>'
            '</a></span> the skates arrived broken<br>again!</p><p>Not happy.</p>')
    response = await deliver(client, {"event": "status.created", "created_at": START.isoformat(),
                                      "object": status(1, content=html, mentions=[{"id": "9", "acct": "acme"}])})

    assert response.status_code == 200, response.text
    interaction = outbox_events(client, "ingest.interaction.recorded")[0][1].interaction
    assert interaction.text == "@acme the skates arrived broken\nagain!\n\nNot happy."
    assert interaction.kind == "mention"
    assert interaction.external_id == f"https://{INSTANCE}/users/dora/statuses/1"
    assert [(i.type, i.value) for i in interaction.author.identifiers] == [("mastodon", f"dora@{INSTANCE}")]
    assert interaction.author.attributes.bio == "maps & parcels"


async def test_a_webhook_with_a_bad_signature_is_401_and_records_nothing(client):
    forged = await deliver(client, {"event": "status.created", "object": status(1)}, secret="guess")
    unsigned = await deliver(client, {"event": "status.created", "object": status(1)}, secret=None)
    assert forged.status_code == unsigned.status_code == 401
    assert stored(client) == []


async def test_a_webhook_with_a_bad_status_names_the_field(client):
    broken = status(1)
    del broken["account"]["acct"]
    response = await deliver(client, {"event": "status.created", "object": broken})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "object.account.acct"
    other = await deliver(client, {"event": "account.approved", "object": {"id": "1"}})
    assert other.status_code == 200 and other.json()["ignored"] == 1
    assert stored(client) == []


async def test_statuses_pushed_by_a_client_dedupe_with_the_webhook_by_uri(client):
    await deliver(client, {"event": "status.created", "object": status(1)})
    seen_elsewhere = status(1, id="999")  # the same status read through another instance
    response = await client.post("/ingest/v1/sources/mastodon", json=[seen_elsewhere, status(2)], headers=WRITER)
    assert [r["status"] for r in response.json()["results"]] == ["duplicate", "accepted"]


class FakeInstance:
    """The part of Mastodon's REST API the poller reads: tag and account timelines, lookup."""

    def __init__(self) -> None:
        self.tag: list[dict] = []
        self.account: list[dict] = []
        self.requests: list[str] = []
        self.app = FastAPI()

        @self.app.get("/api/v1/timelines/tag/{tag}")
        def tag_timeline(tag: str, request: Request, limit: int = 20, min_id: str | None = None):
            self.requests.append(str(request.url))
            return self.page(self.tag, limit, min_id)

        @self.app.get("/api/v1/accounts/lookup")
        def lookup(acct: str):
            if acct != "dora":
                raise HTTPException(404)
            return {"id": "77", "acct": "dora"}

        @self.app.get("/api/v1/accounts/{account_id}/statuses")
        def account_statuses(account_id: str, request: Request, limit: int = 20, min_id: str | None = None):
            self.requests.append(str(request.url))
            return self.page(self.account, limit, min_id)

    @staticmethod
    def page(statuses: list[dict], limit: int, min_id: str | None) -> list[dict]:
        ordered = sorted(statuses, key=lambda s: int(s["id"]))
        if min_id is not None:  # the oldest `limit` after min_id
            chosen = [s for s in ordered if int(s["id"]) > int(min_id)][:limit]
        else:  # the newest `limit`
            chosen = ordered[-limit:]
        return list(reversed(chosen))  # newest first, as Mastodon answers


async def test_polling_reads_the_latest_page_then_catches_up_page_by_page(ingest_settings):
    instance = FakeInstance()
    instance.tag = [status(n) for n in range(45)]
    with http_server(instance.app) as base:
        configured = ingest_settings.model_copy(update={"mastodon_base_url": base, "mastodon_hashtags": ["acme"],
                                                        "run_consumers": False})  # no background poller
        async with serving(configured) as client:
            first = await poll_mastodon(client.runtime)
            assert (first[0].fetched, first[0].accepted, first[0].error) == (40, 40, None)

            instance.tag += [status(n) for n in range(45, 95)]  # 50 more than a page arrive
            second = await poll_mastodon(client.runtime)
            third = await poll_mastodon(client.runtime)

            recorded = {p.interaction.external_id for _, p in outbox_events(client, "ingest.interaction.recorded")}
    assert second[0].accepted == 50 and third[0].fetched == 0
    assert len(recorded) == 90  # the 5 older than the first page were before our time
    assert "min_id=110000000000000044" in instance.requests[1]


async def test_the_background_poller_reads_hashtags_and_accounts_and_keeps_its_place(ingest_settings):
    instance = FakeInstance()
    instance.tag = [status(n) for n in range(3)]
    instance.account = [status(n, acct="dora") for n in range(2, 6)]  # status 2 is in both
    with http_server(instance.app) as base:
        configured = ingest_settings.model_copy(update={
            "mastodon_base_url": base, "mastodon_hashtags": ["#acme"], "mastodon_accounts": ["dora"],
            "mastodon_poll_interval_s": 0.2})
        async with serving(configured) as client:
            await wait_for(lambda: len(stored(client)) == 6)
            instance.tag.append(status(7))
            await wait_for(lambda: len(stored(client)) == 7)
            assert len(outbox_events(client, "ingest.interaction.recorded")) == 7
    assert any("/accounts/77/statuses" in r for r in instance.requests)


async def test_the_background_poller_waits_while_the_outbox_is_over_its_limit(ingest_settings):
    """Back-pressure for pollers: nothing is fetched while more events wait than the limit,
    and polling goes on once the relay has published them."""
    import asyncio

    instance = FakeInstance()
    instance.tag = [status(n) for n in range(3)]
    with http_server(instance.app) as base:
        configured = ingest_settings.model_copy(update={
            "mastodon_base_url": base, "mastodon_hashtags": ["acme"], "mastodon_poll_interval_s": 0.1,
            "ingest_backlog_limit": 2, "run_relay": False})
        async with serving(configured) as client:
            await wait_for(lambda: len(stored(client)) == 3)  # one poll: 3 waiting, over the limit
            instance.tag.append(status(7))
            asked = len(instance.requests)
            await asyncio.sleep(1.0)  # ten intervals
            assert len(instance.requests) == asked and len(stored(client)) == 3
            await client.runtime.relay.publish_pending()
            await wait_for(lambda: len(stored(client)) == 4)


async def test_an_unreachable_instance_is_reported_and_retried_without_losing_the_place(ingest_settings):
    configured = ingest_settings.model_copy(update={"mastodon_base_url": "http://127.0.0.1:9", "run_consumers": False,
                                                    "mastodon_hashtags": ["acme"], "connector_timeout_s": 1})
    async with serving(configured) as client:
        results = await poll_mastodon(client.runtime)
    assert results[0].error and "Connect" in results[0].error


async def test_a_signature_with_non_ascii_characters_is_a_401(client):
    body = dumps({"event": "status.created", "object": status(1)})
    response = await client.post("/ingest/webhooks/mastodon", content=body, headers={
        "Content-Type": "application/json", "X-Hub-Signature": "sha256=\xe9".encode("latin-1")})
    assert response.status_code == 401
    assert stored(client) == []


async def test_a_mastodon_identifier_from_the_canonical_api_is_the_connectors_author(client):
    await deliver(client, {"event": "status.created", "object": status(1)})
    item = {"source": "web", "kind": "post", "external_id": "m1", "occurred_at": START.isoformat(), "text": "hi",
            "author": {"identifiers": [{"type": "mastodon", "value": f"@Dora@{INSTANCE.upper()}"}]}}
    response = await client.post("/ingest/v1/interactions", headers=WRITER, json=item)
    assert response.status_code == 202, response.text
    (webhook, _), (api, recorded) = outbox_events(client, "ingest.interaction.recorded")
    assert recorded.interaction.author.identifiers[0].value == f"dora@{INSTANCE}"
    assert api.subject == webhook.subject  # one author key: one partition, one customer
