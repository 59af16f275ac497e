"""RSS and Atom subscriptions polled from a local HTTP server: ETag and Last-Modified are
honoured (304: nothing read), entries are taken once, new ones are picked up."""

from __future__ import annotations

from email.utils import format_datetime
from datetime import datetime, timezone

import pytest
from fastapi import FastAPI, Request, Response

from tests.ingest.conftest import READER, WRITER, http_server, outbox_events, serving, stored, wait_for


def rss(items: list[tuple[str, str, str]]) -> str:
    entries = "".join(
        f"<item><title>{title}</title><link>https://blog.example.org/{guid}</link>"
        f"<guid isPermaLink=\"false\">{guid}</guid><author>jane@blog.example.org (Jane Roe)</author>"
        f"<pubDate>Thu, 19 Nov 2026 0{n % 9}:00:00 GMT</pubDate>"
        f"<description><![CDATA[<p>{body}</p>]]></description></item>"
        for n, (guid, title, body) in enumerate(items))
    return (f"<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>Roadside reviews</title>"
            f"<link>https://blog.example.org/</link><language>en-us</language>{entries}</channel></rss>")


ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Gadget critic</title><link href="https://critic.example.net/"/>
<id>urn:uuid:5a4e0c1e-feed-4d2c-9a11-000000000001</id><updated>2026-11-19T10:00:00Z</updated>
<author><name>Sam Critic</name><uri>https://critic.example.net/about</uri></author>
<entry><title>Acme anvil, two stars</title><id>urn:uuid:5a4e0c1e-feed-4d2c-9a11-000000000002</id>
<link href="https://critic.example.net/anvil"/><updated>2026-11-19T10:00:00Z</updated>
<content type="html">&lt;p&gt;Heavy, sturdy, &lt;b&gt;late&lt;/b&gt;.&lt;/p&gt;</content></entry>
</feed>"""


class FeedSite:
    """A blog that answers conditional requests like a well-behaved server."""

    def __init__(self) -> None:
        self.items = [("post-1", "Acme rocket skates review", "Fast. Too fast."),
                      ("post-2", "Why I returned my anvil", "It was <b>dented</b> on arrival.")]
        self.version = 1
        self.modified = datetime(2026, 11, 19, 10, 0, tzinfo=timezone.utc)
        self.hits: list[tuple[str, int]] = []
        self.use_etag = True
        self.fail = False
        self.app = FastAPI()

        @self.app.get("/feed.xml")
        def feed(request: Request) -> Response:
            if self.fail:
                self.hits.append(("rss", 503))
                return Response(status_code=503)
            etag = f'"v{self.version}"'
            last_modified = format_datetime(self.modified, usegmt=True)
            unchanged = (request.headers.get("if-none-match") == etag if self.use_etag
                         else request.headers.get("if-modified-since") == last_modified)
            headers = {"Last-Modified": last_modified, **({"ETag": etag} if self.use_etag else {})}
            if unchanged:
                self.hits.append(("rss", 304))
                return Response(status_code=304, headers=headers)
            self.hits.append(("rss", 200))
            return Response(rss(self.items), media_type="application/rss+xml", headers=headers)

        @self.app.get("/atom.xml")
        def atom() -> Response:
            return Response(ATOM, media_type="application/atom+xml")

    def publish(self, guid: str, title: str, body: str) -> None:
        self.items.insert(0, (guid, title, body))
        self.version += 1
        self.modified = self.modified.replace(hour=self.modified.hour + 1)


@pytest.fixture
async def client(ingest_settings):
    """Without the background poller, so that each test decides when a feed is fetched."""
    async with serving(ingest_settings.model_copy(update={"run_consumers": False})) as client:
        yield client


async def subscribe(client, url: str, **extra) -> dict:
    response = await client.post("/ingest/v1/feeds", json={"url": url, **extra}, headers=WRITER)
    assert response.status_code == 201, response.text
    return response.json()


async def test_a_feed_is_read_once_then_answered_304_until_a_new_entry_appears(client):
    site = FeedSite()
    with http_server(site.app) as base:
        feed = await subscribe(client, f"{base}/feed.xml", kind="review")
        first = (await client.post(f"/ingest/v1/feeds/{feed['id']}/poll", headers=WRITER)).json()
        unchanged = (await client.post(f"/ingest/v1/feeds/{feed['id']}/poll", headers=WRITER)).json()
        site.publish("post-3", "Globex is cheaper", "Thinking of switching to Globex.")
        changed = (await client.post(f"/ingest/v1/feeds/{feed['id']}/poll", headers=WRITER)).json()
        state = (await client.get(f"/ingest/v1/feeds/{feed['id']}", headers=READER)).json()

    assert (first["status"], first["accepted"]) == (200, 2)
    assert (unchanged["status"], unchanged["accepted"]) == (304, 0)
    assert (changed["status"], changed["new_entries"], changed["accepted"]) == (200, 1, 1)
    assert [status for _, status in site.hits] == [200, 304, 200]
    assert state["etag"] == '"v2"' and state["entries_seen"] == 3 and state["title"] == "Roadside reviews"
    interactions = [p.interaction for _, p in outbox_events(client, "ingest.interaction.recorded")]
    assert len(interactions) == 3
    returned = interactions[1]
    assert (returned.source, returned.kind, returned.language) == ("rss", "review", "en-US")
    assert returned.text == "Why I returned my anvil\n\nIt was dented on arrival."
    assert [(i.type, i.value) for i in returned.author.identifiers] == [("email", "jane@blog.example.org")]
    assert returned.external_id == f"{feed['url']}#post-2"


async def test_last_modified_alone_is_honoured(client):
    site = FeedSite()
    site.use_etag = False
    with http_server(site.app) as base:
        feed = await subscribe(client, f"{base}/feed.xml")
        await client.post(f"/ingest/v1/feeds/{feed['id']}/poll", headers=WRITER)
        again = (await client.post(f"/ingest/v1/feeds/{feed['id']}/poll", headers=WRITER)).json()
    assert again["status"] == 304
    assert len(stored(client)) == 2


async def test_an_atom_feed_is_read_with_its_author_and_html_content(client):
    site = FeedSite()
    with http_server(site.app) as base:
        feed = await subscribe(client, f"{base}/atom.xml")
        result = (await client.post(f"/ingest/v1/feeds/{feed['id']}/poll", headers=WRITER)).json()
    assert result["accepted"] == 1
    entry = outbox_events(client, "ingest.interaction.recorded")[0][1].interaction
    assert entry.external_id == "urn:uuid:5a4e0c1e-feed-4d2c-9a11-000000000002"
    assert entry.text == "Acme anvil, two stars\n\nHeavy, sturdy, late."
    assert [(i.type, i.value) for i in entry.author.identifiers] == [("web", "https://critic.example.net/about")]


async def test_subscribed_feeds_are_polled_on_their_schedule(ingest_settings):
    site = FeedSite()
    with http_server(site.app) as base:
        fast = ingest_settings.model_copy(update={"feed_poll_interval_s": 0.3})
        async with serving(fast) as client:
            await subscribe(client, f"{base}/feed.xml")
            await wait_for(lambda: len(stored(client)) == 2)
            await wait_for(lambda: (("rss", 304) in site.hits))
            site.publish("post-3", "A third review", "Still waiting for the refund.")
            await wait_for(lambda: len(stored(client)) == 3)
            assert len(outbox_events(client, "ingest.interaction.recorded")) == 3


async def test_a_failing_feed_is_reported_on_the_subscription(client):
    site = FeedSite()
    site.fail = True
    with http_server(site.app) as base:
        feed = await subscribe(client, f"{base}/feed.xml")
        result = (await client.post(f"/ingest/v1/feeds/{feed['id']}/poll", headers=WRITER)).json()
        state = (await client.get(f"/ingest/v1/feeds/{feed['id']}", headers=READER)).json()
    assert result["status"] == 503 and result["error"] == "HTTP 503"
    assert state["last_status"] == 503 and state["last_error"] == "HTTP 503"
    assert stored(client) == []


async def test_subscriptions_are_validated_listed_and_deleted(client):
    bad = await client.post("/ingest/v1/feeds", json={"url": "ftp://old.example/feed"}, headers=WRITER)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "url"
    feed = await subscribe(client, "https://blog.example.org/feed.xml")
    twice = await client.post("/ingest/v1/feeds", json={"url": "https://blog.example.org/feed.xml"}, headers=WRITER)
    assert twice.status_code == 409
    listed = (await client.get("/ingest/v1/feeds", headers=READER)).json()
    assert [f["id"] for f in listed["items"]] == [feed["id"]]
    assert (await client.delete(f"/ingest/v1/feeds/{feed['id']}", headers=READER)).status_code == 403
    assert (await client.delete(f"/ingest/v1/feeds/{feed['id']}", headers=WRITER)).status_code == 204
    assert (await client.get(f"/ingest/v1/feeds/{feed['id']}", headers=READER)).status_code == 404


async def test_a_feed_larger_than_the_payload_limit_is_refused_not_read_whole(ingest_settings):
    site = FeedSite()
    site.items = [(f"post-{n}", "x" * 200, "y" * 800) for n in range(50)]
    with http_server(site.app) as base:
        small = ingest_settings.model_copy(update={"run_consumers": False, "ingest_max_payload_bytes": 8192})
        async with serving(small) as client:
            feed = await subscribe(client, f"{base}/feed.xml")
            result = (await client.post(f"/ingest/v1/feeds/{feed['id']}/poll", headers=WRITER)).json()
            assert stored(client) == []
    assert result["status"] is None and "larger than 8192 bytes" in result["error"]


TYPED_ATOM = """<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>Bistro</title>
<id>urn:bistro</id><updated>2026-11-19T10:00:00Z</updated><author><name>Jane</name></author>
<entry><id>urn:bistro:1</id><title type="html">Fish &amp;amp; Chips &lt;em&gt;now&lt;/em&gt;</title>
<updated>2026-11-19T10:00:00Z</updated><summary type="text">if x&lt;y and a&lt;b&gt;c then buy Acme</summary></entry>
</feed>"""

BARE_RSS = """<?xml version="1.0"?><rss version="2.0"><channel><title>Notes</title><link>https://notes.example.org/</link>
<item><title>First note</title><description>Acme was late.</description></item>
<item><description>Untitled, and no link either.</description></item></channel></rss>"""


def static_site(**documents: str) -> FastAPI:
    app = FastAPI()
    for name, document in documents.items():
        app.get(f"/{name}.xml")(lambda document=document: Response(document, media_type="application/xml"))
    return app


async def test_an_html_title_becomes_text_and_a_plain_text_summary_stays_as_written(client):
    with http_server(static_site(typed=TYPED_ATOM)) as base:
        feed = await subscribe(client, f"{base}/typed.xml")
        await client.post(f"/ingest/v1/feeds/{feed['id']}/poll", headers=WRITER)
    entry = outbox_events(client, "ingest.interaction.recorded")[0][1].interaction
    assert entry.text == "Fish & Chips now\n\nif x<y and a<b>c then buy Acme"


async def test_entries_beyond_the_per_poll_limit_are_taken_by_the_next_polls(ingest_settings):
    site = FeedSite()
    site.items = [(f"post-{n}", f"Review {n}", "Fine.") for n in range(8)]
    site.use_etag = False
    limited = ingest_settings.model_copy(update={"run_consumers": False, "feed_max_entries": 5})
    with http_server(site.app) as base:
        async with serving(limited) as client:
            feed = await subscribe(client, f"{base}/feed.xml")
            polls = []
            for _ in range(3):
                site.modified = site.modified.replace(minute=len(polls) + 1)  # not a 304
                polls.append((await client.post(f"/ingest/v1/feeds/{feed['id']}/poll", headers=WRITER)).json())
            assert [p["accepted"] for p in polls] == [5, 3, 0]
            assert len(stored(client)) == 8


async def test_rss_items_without_guid_or_link_are_recorded_once_by_their_content(client):
    with http_server(static_site(bare=BARE_RSS)) as base:
        feed = await subscribe(client, f"{base}/bare.xml")
        first = (await client.post(f"/ingest/v1/feeds/{feed['id']}/poll", headers=WRITER)).json()
        second = (await client.post(f"/ingest/v1/feeds/{feed['id']}/poll", headers=WRITER)).json()
    assert first["accepted"] == 2
    assert (second["new_entries"], second["accepted"]) == (0, 0)
    keys = {row.external_id for row in stored(client)}
    assert len(keys) == 2 and all(k.startswith(f"{base}/bare.xml#sha256:") for k in keys)
