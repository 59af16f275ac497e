"""RSS and Atom entries (parsed by feedparser) as interactions.

- The key is the entry's ``id`` (RSS ``guid``, Atom ``id``), else its link. An id that
  is not globally unique (no scheme, e.g. ``"42"``) is qualified with the feed URL. An RSS
  item with neither is keyed by a hash of its title, text, times and author, qualified too.
- At most ``limit`` new entries are taken per poll (those already taken are not counted):
  the next polls take the rest.
- Text: the title, then the content (or summary), as plain text: HTML is converted (tags
  removed, entities decoded), plain text (``type="text"``) is kept as it is.
- Author: the entry's (or feed's) author e-mail, else its URI, else its name on the
  feed's site (``rss_author``: ``blog.example.org/Jane Doe``), else the feed itself.
"""

from __future__ import annotations

import calendar
import hashlib
import json
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


def entry_key(entry: Any, feed_url: str) -> str:
    entry_id = entry.get("id") or entry.get("link")
    if not entry_id:
        # RSS makes guid and link optional: such an item is known by what it says
        return f"{feed_url}#{_content_hash(entry)}"
    return entry_id if ":" in entry_id else f"{feed_url}#{entry_id}"


def _content_hash(entry: Any) -> str:
    """The same on every poll while the entry is unchanged (an edited one is a new entry)."""
    basis = [entry.get("title"), entry.get("summary"), [c.get("value") for c in entry.get("content") or []],
             entry.get("published"), entry.get("updated"), entry.get("author")]
    return "sha256:" + hashlib.sha256(json.dumps(basis, ensure_ascii=False).encode()).hexdigest()


def _text(detail: Any) -> str | None:
    """A title, summary or content as plain text: feedparser says which of them is HTML (an
    Atom ``type="text"`` value is not, and ``a<b>c`` in it is not a tag)."""
    if not detail or detail.get("value") is None:
        return None
    value = detail["value"]
    if "html" in (detail.get("type") or "text/html"):
        return html_to_text(value)
    return value.strip()


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
    for n, entry in enumerate(document.entries):
        key = entry_key(entry, feed_url)
        if key[:1024] in seen:  # stored cut to 1024 characters
            continue
        if len(entry_ids) >= limit:
            break  # counted on the new entries only: the rest are taken on the next polls
        index = parsed.next_index()
        entry_ids[index] = key
        identifier, name = _author(entry, feed_meta, feed_url)
        body = None
        if entry.get("content"):
            body = _text(entry["content"][0])
        elif entry.get("summary"):
            body = _text(entry.get("summary_detail") or {"value": entry.get("summary")})
        title = _text(entry.get("title_detail") or {"value": entry.get("title"), "type": "text/plain"})
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
