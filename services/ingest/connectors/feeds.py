"""RSS and Atom entries (parsed by feedparser) as interactions.

- The key is the entry's ``id`` (RSS ``guid``, Atom ``id``), else its link. An id that
  is not globally unique (no scheme, e.g. ``"42"``) is qualified with the feed URL.
- Text: the title, then the content (or summary) as plain text.
- Author: the entry's (or feed's) author e-mail, else its URI, else its name on the
  feed's site (``rss_author``: ``blog.example.org/Jane Doe``), else the feed itself.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from socialzone_ingest.connectors import Parsed, html_to_text, language


@dataclass
class FeedEntries:
    parsed: Parsed
    entry_ids: dict[int, str]
    """index of a candidate -> its entry id."""
    title: str | None
    bozo: str | None
    """Why the document was not a well-formed feed, when it was not."""


def entry_key(entry: Any, feed_url: str) -> str | None:
    entry_id = entry.get("id") or entry.get("link")
    if not entry_id:
        return None
    return entry_id if ":" in entry_id else f"{feed_url}#{entry_id}"


def _time(entry: Any) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = entry.get(key)
        if value:
            return datetime.fromtimestamp(calendar.timegm(value), tz=timezone.utc)
    return None


def _author(entry: Any, feed: Any, feed_url: str) -> tuple[dict, str | None]:
    for detail in (entry.get("author_detail"), feed.get("author_detail")):
        if detail:
            name = detail.get("name")
            if detail.get("email"):
                return {"type": "email", "value": detail["email"]}, name
            if detail.get("href"):
                return {"type": "web", "value": detail["href"]}, name
    name = entry.get("author") or feed.get("author")
    host = urlsplit(feed.get("link") or feed_url).hostname or feed_url
    if name:
        return {"type": "rss_author", "value": f"{host}/{name}"[:512]}, name
    return {"type": "web", "value": feed.get("link") or feed_url}, feed.get("title")


def read_feed(content: bytes) -> Any:
    import feedparser

    return feedparser.parse(content)


def parse_feed(document: Any, *, feed_url: str, source: str, kind: str, seen: set[str],
               now: datetime, limit: int) -> FeedEntries:
    """The entries of a feedparser document not in ``seen``, as candidates."""
    parsed = Parsed()
    entry_ids: dict[int, str] = {}
    feed_meta = document.get("feed", {})
    bozo = str(document.get("bozo_exception")) if document.get("bozo") and not document.entries else None
    for n, entry in enumerate(document.entries[:limit]):
        key = entry_key(entry, feed_url)
        if key is None or key in seen:
            continue
        index = parsed.next_index()
        entry_ids[index] = key
        identifier, name = _author(entry, feed_meta, feed_url)
        body = None
        if entry.get("content"):
            body = html_to_text(entry["content"][0].get("value"))
        elif entry.get("summary"):
            body = html_to_text(entry.get("summary"))
        title = entry.get("title")
        text = "\n\n".join(p for p in (title, body) if p) or None
        declared = language((entry.get("content") or [{}])[0].get("language") or feed_meta.get("language"))
        fields = {
            "source": source, "kind": kind, "external_id": key[:512], "url": entry.get("link"),
            "occurred_at": _time(entry) or now,
            "author": {"identifiers": [identifier], "display_name": name},
            "text": text, "language": declared,
        }
        parsed.add(index, fields, path=f"entries[{n}]")
    return FeedEntries(parsed, entry_ids, feed_meta.get("title"), bozo)
