"""RSS/Atom feed subscriptions and their polling.

Each feed is fetched when due (``next_poll_at``) with ``If-None-Match`` and
``If-Modified-Since`` from the previous answer, so an unchanged feed costs a 304.
Entry ids already taken are remembered per feed (``feed_entries``), and the
interactions themselves are de-duplicated on (source, entry id) as everywhere.
While the outbox backlog is over its limit, polling waits: nothing is dropped.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

import httpx
from pydantic import BaseModel
from sqlalchemy import delete
from sqlmodel import Session, col, select

from socialzone_common.db import transaction
from socialzone_common.envelope import now_utc
from socialzone_common.errors import Conflict
from socialzone_common.service import ServiceRuntime

from socialzone_ingest import domain
from socialzone_ingest.connectors.feeds import parse_feed, read_feed
from socialzone_ingest.enrich import enricher_for
from socialzone_ingest.models import Feed, FeedEntry
from socialzone_ingest.settings import IngestSettings

log = logging.getLogger(__name__)
USER_AGENT = "socialzone-ingest/0.1 (+feed reader)"
TICK_S = 1.0


class _TooLarge(Exception):
    pass


class PollResult(BaseModel):
    feed_id: str
    status: int | None
    """The HTTP status of the fetch (304: unchanged); None when the request failed."""
    new_entries: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    error: str | None = None


def subscribe(session: Session, *, url: str, kind: str, source: str, feed_id: str) -> Feed:
    if session.exec(select(Feed).where(Feed.url == url)).first() is not None:
        raise Conflict(f"url: already subscribed to {url}", errors=[{"field": "url", "message": "already subscribed"}])
    feed = Feed(id=feed_id, url=url, kind=kind, source=source)
    session.add(feed)
    session.flush()
    return feed


def unsubscribe(session: Session, *, feed_id: str) -> bool:
    feed = session.get(Feed, feed_id)
    if feed is None:
        return False
    session.exec(delete(FeedEntry).where(col(FeedEntry.feed_id) == feed_id))
    session.delete(feed)
    return True


async def poll_feed(runtime: ServiceRuntime, feed_id: str, *, client: httpx.AsyncClient | None = None) -> PollResult | None:
    """Fetch one feed now and record its new entries. None if there is no such feed."""
    settings: IngestSettings = runtime.settings  # type: ignore[assignment]

    def load() -> Feed | None:
        with runtime.sessions() as session:
            return session.get(Feed, feed_id)

    feed = await asyncio.to_thread(load)
    if feed is None:
        return None
    headers = {"User-Agent": USER_AGENT, "Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.5"}
    if feed.etag:
        headers["If-None-Match"] = feed.etag
    if feed.last_modified:
        headers["If-Modified-Since"] = feed.last_modified
    owned = client is None
    client = client or httpx.AsyncClient(timeout=settings.connector_timeout_s, follow_redirects=True)
    limit = settings.ingest_max_payload_bytes
    try:
        async with client.stream("GET", feed.url, headers=headers) as response:
            content = b""
            if response.status_code == 200:
                chunks, size = [], 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise _TooLarge(f"the feed is larger than {limit} bytes")
                    chunks.append(chunk)
                content = b"".join(chunks)
    except (httpx.HTTPError, _TooLarge) as exc:
        error = f"{type(exc).__name__}: {exc}"[:1000] if isinstance(exc, httpx.HTTPError) else str(exc)
        await asyncio.to_thread(_finish, runtime, feed_id, status=None, error=error, settings=settings)
        return PollResult(feed_id=feed_id, status=None, error=error)
    finally:
        if owned:
            await client.aclose()
    if response.status_code == 304:
        await asyncio.to_thread(_finish, runtime, feed_id, status=304, error=None, settings=settings)
        return PollResult(feed_id=feed_id, status=304)
    if response.status_code != 200:
        error = f"HTTP {response.status_code}"
        await asyncio.to_thread(_finish, runtime, feed_id, status=response.status_code, error=error, settings=settings)
        return PollResult(feed_id=feed_id, status=response.status_code, error=error)
    document = await asyncio.to_thread(read_feed, content)
    enricher = enricher_for(settings)

    def record() -> PollResult:
        with transaction(runtime.sessions) as session:
            current = session.get(Feed, feed_id)
            if current is None:  # unsubscribed meanwhile
                return PollResult(feed_id=feed_id, status=200)
            keys = [_key(e, current.url) for e in document.entries]
            seen: set[str] = set()
            for i in range(0, len(keys), 500):
                seen.update(session.exec(select(FeedEntry.entry_id).where(
                    FeedEntry.feed_id == feed_id, col(FeedEntry.entry_id).in_(keys[i:i + 500]))).all())
            entries = parse_feed(document, feed_url=current.url, source=current.source, kind=current.kind,
                                 seen=seen, now=now_utc(), limit=settings.feed_max_entries)
            result = domain.apply(session, parsed=entries.parsed, enricher=enricher,
                                  default_region=settings.default_phone_region)
            taken = [{"feed_id": feed_id, "entry_id": entries.entry_ids[r.index][:1024],
                      "interaction_id": r.interaction_id, "seen_at": now_utc()}
                     for r in result.results if r.status in ("accepted", "duplicate")]
            for i in range(0, len(taken), 500):
                domain._insert(session, FeedEntry, taken[i:i + 500])
            current.etag = response.headers.get("etag")
            current.last_modified = response.headers.get("last-modified")
            current.title = (entries.title or current.title or "")[:512] or None
            current.entries_seen += len(taken)
            _schedule(current, status=200, error=entries.bozo, settings=settings)
            session.add(current)
            return PollResult(feed_id=feed_id, status=200, new_entries=len(entries.entry_ids),
                              accepted=result.accepted, duplicates=result.duplicates, rejected=result.rejected,
                              error=entries.bozo)

    return await asyncio.to_thread(record)


def _key(entry, feed_url: str) -> str:
    from socialzone_ingest.connectors.feeds import entry_key

    return entry_key(entry, feed_url)[:1024]  # FeedEntry.entry_id's length


def _schedule(feed: Feed, *, status: int | None, error: str | None, settings: IngestSettings) -> None:
    now = now_utc()
    feed.last_polled_at = now
    feed.last_status = status
    feed.last_error = error[:1000] if error else None
    feed.next_poll_at = now + timedelta(seconds=settings.feed_poll_interval_s)


def _finish(runtime: ServiceRuntime, feed_id: str, *, status: int | None, error: str | None,
            settings: IngestSettings) -> None:
    with transaction(runtime.sessions) as session:
        feed = session.get(Feed, feed_id)
        if feed is not None:
            _schedule(feed, status=status, error=error, settings=settings)
            session.add(feed)


def _due(runtime: ServiceRuntime, now: datetime) -> list[str]:
    with runtime.sessions() as session:
        return list(session.exec(select(Feed.id).where(col(Feed.next_poll_at) <= now)
                                 .order_by(col(Feed.next_poll_at)).limit(50)).all())


async def feed_poller(runtime: ServiceRuntime, stop: asyncio.Event) -> None:
    """Background task: fetch every feed that is due, one at a time, until stopped."""
    settings: IngestSettings = runtime.settings  # type: ignore[assignment]
    async with httpx.AsyncClient(timeout=settings.connector_timeout_s, follow_redirects=True) as client:
        while not stop.is_set():
            if not await asyncio.to_thread(domain.backlog_full, runtime.sessions, settings.ingest_backlog_limit):
                for feed_id in await asyncio.to_thread(_due, runtime, now_utc()):
                    if stop.is_set():
                        break
                    try:
                        await poll_feed(runtime, feed_id, client=client)
                    except Exception:  # one broken feed must not stop the others
                        log.exception("feed %s could not be polled", feed_id)
                        await asyncio.to_thread(_finish, runtime, feed_id, status=None,
                                                error="internal error (see the log)", settings=settings)
            try:
                await asyncio.wait_for(stop.wait(), TICK_S)
            except asyncio.TimeoutError:
                pass
