"""Polling a Mastodon instance's hashtag and account timelines (httpx).

Every ``mastodon_poll_interval_s`` each configured stream is read forward from where
the last poll stopped (``min_id``: the page just after the newest status seen, oldest
first), page after page until it is caught up, so nothing is skipped when more than a
page arrived in between. The first poll of a stream takes its latest page. The cursor
of a stream is saved in the same transaction as the statuses it covered.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from socialzone_common.db import transaction
from socialzone_common.envelope import now_utc
from socialzone_common.service import ServiceRuntime

from socialzone_ingest import domain
from socialzone_ingest.connectors import mastodon
from socialzone_ingest.enrich import enricher_for
from socialzone_ingest.models import PollCursor
from socialzone_ingest.settings import IngestSettings

log = logging.getLogger(__name__)
PAGE = 40  # Mastodon's maximum page size for timelines
MAX_PAGES = 25  # per stream and poll: a long-idle stream catches up over several polls


class StreamResult(BaseModel):
    stream: str
    fetched: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    error: str | None = None


def streams(settings: IngestSettings) -> list[str]:
    return [f"tag:{t}" for t in settings.mastodon_hashtags] + [f"account:{a}" for a in settings.mastodon_accounts]


def _cursor(runtime: ServiceRuntime, stream: str) -> str | None:
    with runtime.sessions() as session:
        row = session.get(PollCursor, ("mastodon", stream))
        return row.since_id if row else None


def _save(runtime: ServiceRuntime, stream: str, statuses: list[Any], newest: str | None,
          error: str | None, settings: IngestSettings) -> domain.BatchResult | None:
    """Record one page and move the stream's cursor, in one transaction."""
    enricher = enricher_for(settings)
    with transaction(runtime.sessions) as session:
        result = None
        if statuses:
            result = domain.apply(session, parsed=mastodon.parse_statuses(statuses), enricher=enricher,
                                  default_region=settings.default_phone_region)
        row = session.get(PollCursor, ("mastodon", stream)) or PollCursor(connector="mastodon", stream=stream)
        if newest is not None:
            row.since_id = newest
        row.polled_at = now_utc()
        row.last_error = error[:1000] if error else None
        session.add(row)
        return result


async def _account_id(client: httpx.AsyncClient, base: str, account: str) -> str:
    if account.isdigit():
        return account
    response = await client.get(f"{base}/api/v1/accounts/lookup", params={"acct": account.lstrip("@")})
    response.raise_for_status()
    return str(response.json()["id"])


def _newest(statuses: list[Any], current: str | None) -> str | None:
    ids = [s.get("id") for s in statuses if isinstance(s, dict) and str(s.get("id", "")).isdigit()]
    best = max(ids, key=int, default=None)
    if current is not None and (best is None or int(current) >= int(best)):
        return current
    return str(best) if best is not None else current


async def poll_stream(runtime: ServiceRuntime, client: httpx.AsyncClient, stream: str) -> StreamResult:
    settings: IngestSettings = runtime.settings  # type: ignore[assignment]
    base = (settings.mastodon_base_url or "").rstrip("/")
    result = StreamResult(stream=stream)
    kind, _, name = stream.partition(":")
    try:
        if kind == "tag":
            url = f"{base}/api/v1/timelines/tag/{quote(name.lstrip('#'), safe='')}"
        else:
            url = f"{base}/api/v1/accounts/{quote(await _account_id(client, base, name), safe='')}/statuses"
        cursor = await asyncio.to_thread(_cursor, runtime, stream)
        for _ in range(MAX_PAGES):
            params: dict[str, Any] = {"limit": PAGE}
            if cursor is not None:
                params["min_id"] = cursor
            response = await client.get(url, params=params)
            response.raise_for_status()
            statuses = response.json()
            if not isinstance(statuses, list):
                raise ValueError("the timeline is not a JSON array")
            newest = _newest(statuses, cursor)
            batch = await asyncio.to_thread(_save, runtime, stream, statuses, newest, None, settings)
            result.fetched += len(statuses)
            if batch is not None:
                result.accepted += batch.accepted
                result.duplicates += batch.duplicates
                result.rejected += batch.rejected
            if cursor is None or len(statuses) < PAGE or newest == cursor:
                break  # the first poll takes the latest page only; later ones read until caught up
            cursor = newest
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        log.warning("mastodon stream %s could not be polled: %s", stream, result.error)
        await asyncio.to_thread(_save, runtime, stream, [], None, result.error, settings)
    return result


async def poll_mastodon(runtime: ServiceRuntime, *, client: httpx.AsyncClient | None = None) -> list[StreamResult]:
    """One round over every configured stream."""
    settings: IngestSettings = runtime.settings  # type: ignore[assignment]
    if not settings.mastodon_base_url:
        return []
    headers = {"User-Agent": "socialzone-ingest/0.1"}
    if settings.mastodon_access_token is not None:
        headers["Authorization"] = f"Bearer {settings.mastodon_access_token.get_secret_value()}"
    owned = client is None
    client = client or httpx.AsyncClient(timeout=settings.connector_timeout_s, headers=headers)
    try:
        return [await poll_stream(runtime, client, stream) for stream in streams(settings)]
    finally:
        if owned:
            await client.aclose()


async def mastodon_poller(runtime: ServiceRuntime, stop: asyncio.Event) -> None:
    """Background task: poll the configured streams every interval, until stopped."""
    settings: IngestSettings = runtime.settings  # type: ignore[assignment]
    if not settings.mastodon_base_url or not streams(settings):
        return
    while not stop.is_set():
        if not await asyncio.to_thread(domain.backlog_full, runtime.sessions, settings.ingest_backlog_limit):
            await poll_mastodon(runtime)
        try:
            await asyncio.wait_for(stop.wait(), settings.mastodon_poll_interval_s)
        except asyncio.TimeoutError:
            pass
