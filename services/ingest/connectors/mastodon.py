"""Mastodon statuses: from a server webhook (``{"event": "status.created", "object": {status}}``)
and from polling an instance's hashtag and account timelines (a JSON array of statuses).

- The key is the status ``uri``: it is the same on every instance, whereas ``id`` is the
  id on the instance we read it from, so a status seen by webhook and by polling is one.
- ``content`` is HTML: it becomes plain text. ``visibility: direct`` is a direct message.
- The author is ``acct`` qualified with its instance (``alice@social.example``).
- A boost (``reblog``) records the boosted status, once.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any
from urllib.parse import urlsplit

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from socialzone_ingest.connectors import Parsed, html_to_text, language, native_errors
from socialzone_ingest.models import FieldError

SOURCE = "mastodon"


def signature_valid(secret: str, body: bytes, header: str | None) -> bool:
    """Mastodon signs webhook deliveries with ``X-Hub-Signature: sha256=<hex HMAC-SHA256>``."""
    if not header or not header.startswith("sha256="):
        return False
    given = header.removeprefix("sha256=").strip().lower()
    if not given.isascii():
        return False  # not a hex digest (compare_digest refuses non-ASCII text: it would be a 500)
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given)


class _Native(BaseModel):
    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)


class Account(_Native):
    id: str = Field(min_length=1)
    acct: str = Field(min_length=1)
    username: str | None = None
    url: str | None = None
    display_name: str | None = None
    followers_count: int | None = Field(default=None, ge=0)
    note: str | None = None
    avatar: str | None = None


class Tag(_Native):
    name: str


class Mention(_Native):
    acct: str
    id: str | None = None


class Status(_Native):
    id: str = Field(min_length=1)
    uri: str = Field(min_length=1)
    url: str | None = None
    created_at: AwareDatetime
    content: str = ""
    spoiler_text: str | None = None
    language: str | None = None
    visibility: str | None = None
    in_reply_to_id: str | None = None
    account: Account
    tags: list[Tag] = []
    mentions: list[Mention] = []
    replies_count: int | None = None
    reblogs_count: int | None = None
    favourites_count: int | None = None
    reblog: dict | None = None


def qualified_acct(account: Account) -> str:
    """``alice`` on its home instance is ``alice@<that instance>``."""
    if "@" in account.acct:
        return account.acct.lower()
    host = urlsplit(account.url).hostname if account.url else None
    return f"{account.acct}@{host}".lower() if host else account.acct.lower()


def parse_statuses(statuses: Any, *, path: str = "") -> Parsed:
    """An array of statuses (a timeline page), or one status."""
    parsed = Parsed()
    items = statuses if isinstance(statuses, list) else [statuses]
    for n, raw in enumerate(items):
        _status(parsed, raw, f"{path}[{n}]" if isinstance(statuses, list) else path)
    return parsed


def parse_webhook(payload: Any) -> Parsed:
    """A server webhook delivery: ``status.created`` and ``status.updated`` record the status."""
    parsed = Parsed()
    if not isinstance(payload, dict) or not isinstance(payload.get("event"), str):
        parsed.reject(parsed.next_index(), [FieldError(field="event", message="Field required")])
        return parsed
    if payload["event"] not in ("status.created", "status.updated"):
        parsed.ignore(parsed.next_index(), path="event")
        return parsed
    _status(parsed, payload.get("object"), "object")
    return parsed


def _status(parsed: Parsed, raw: Any, path: str) -> None:
    index = parsed.next_index()
    if isinstance(raw, dict) and isinstance(raw.get("reblog"), dict):
        raw, path = raw["reblog"], f"{path}.reblog" if path else "reblog"
    try:
        status = Status.model_validate(raw)
    except ValidationError as exc:
        parsed.reject(index, native_errors(exc, path), path=path or None)
        return
    account = status.account
    text = html_to_text(status.content)
    if status.spoiler_text:
        text = f"{status.spoiler_text}\n\n{text}" if text else status.spoiler_text
    kind = ("direct_message" if status.visibility == "direct"
            else "reply" if status.in_reply_to_id else "mention" if status.mentions else "post")
    attributes = {k: v for k, v in {"bio": html_to_text(account.note), "avatar_url": account.avatar}.items() if v}
    metrics = {name: value for name, value in (("replies", status.replies_count), ("reposts", status.reblogs_count),
                                                ("likes", status.favourites_count)) if value is not None}
    fields = {
        "source": SOURCE, "kind": kind, "external_id": status.uri, "url": status.url or status.uri,
        "occurred_at": status.created_at,
        "author": {"identifiers": [{"type": "mastodon", "value": qualified_acct(account)}],
                   "display_name": account.display_name or account.username,
                   "followers": account.followers_count, **({"attributes": attributes} if attributes else {})},
        "text": text, "language": language(status.language), "in_reply_to": status.in_reply_to_id,
        "metrics": metrics,
    }
    parsed.add(index, fields, path=path or None,
               field_names={"external_id": "uri", "occurred_at": "created_at", "text": "content",
                            "author": "account"})
