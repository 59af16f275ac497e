"""Meta webhooks: Facebook Page ``feed`` changes (posts and comments), Messenger
``messaging`` events and Instagram ``comments`` changes.

A delivery is ``{"object": "page" | "instagram", "entry": [{"id", "time", "changes" | "messaging"}]}``.
- ``verb: add`` records; ``edited`` is the same item again (a duplicate, nothing new);
  ``remove`` retracts (deleted), ``hide`` retracts (moderated).
- The page's own comments and Messenger echoes (``is_echo``) are ignored: they are ours.
- Reactions, likes, Instagram mentions (they carry no text) and other fields are ignored.

The signature (``X-Hub-Signature-256``) is checked by the webhook route before this runs.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from socialzone_ingest.connectors import Parsed, Retraction, epoch, native_errors
from socialzone_ingest.models import FieldError


def signature_valid(secret: str, body: bytes, header: str | None) -> bool:
    """``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body with the app secret>``."""
    if not header or not header.startswith("sha256="):
        return False
    given = header.removeprefix("sha256=").strip().lower()
    if not given.isascii():
        return False  # not a hex digest (compare_digest refuses non-ASCII text: it would be a 500)
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given)


class _Native(BaseModel):
    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True, populate_by_name=True)


def _when(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return epoch(value)
    return value


class FromUser(_Native):
    id: str = Field(min_length=1)
    name: str | None = None
    username: str | None = None


class FeedChange(_Native):
    item: str
    verb: str
    post_id: str | None = None
    comment_id: str | None = None
    parent_id: str | None = None
    from_: FromUser | None = Field(default=None, alias="from")
    message: str | None = None
    created_time: datetime | None = None

    @field_validator("created_time", mode="before")
    @classmethod
    def _epoch(cls, value: Any) -> Any:
        return _when(value)


class InstagramMedia(_Native):
    id: str | None = None


class InstagramComment(_Native):
    id: str = Field(min_length=1)
    text: str | None = None
    from_: FromUser = Field(alias="from")
    media: InstagramMedia | None = None
    parent_id: str | None = None


class MessagingParty(_Native):
    id: str = Field(min_length=1)


class Message(_Native):
    mid: str = Field(min_length=1)
    text: str | None = None
    is_echo: bool = False
    reply_to: dict | None = None


class Messaging(_Native):
    sender: MessagingParty
    recipient: MessagingParty | None = None
    timestamp: datetime
    message: Message | None = None

    @field_validator("timestamp", mode="before")
    @classmethod
    def _epoch(cls, value: Any) -> Any:
        return _when(value)


_POST_ITEMS = {"post", "status", "photo", "video", "share"}


def parse(payload: Any) -> Parsed:
    parsed = Parsed()
    if not isinstance(payload, dict) or payload.get("object") not in ("page", "instagram"):
        parsed.reject(parsed.next_index(), [FieldError(field="object", message="must be 'page' or 'instagram'")])
        return parsed
    network = "facebook" if payload["object"] == "page" else "instagram"
    entries = payload.get("entry")
    if not isinstance(entries, list):
        parsed.reject(parsed.next_index(), [FieldError(field="entry", message="Input should be a valid list")])
        return parsed
    for e, entry in enumerate(entries):
        if not isinstance(entry, dict):
            parsed.reject(parsed.next_index(), [FieldError(field=f"entry[{e}]", message="must be an object")])
            continue
        owner = str(entry.get("id") or "")
        entry_time = _entry_time(entry.get("time"))
        for c, change in enumerate(entry.get("changes") or []):
            path = f"entry[{e}].changes[{c}]"
            field = change.get("field") if isinstance(change, dict) else None
            value = change.get("value") if isinstance(change, dict) else None
            if network == "facebook" and field == "feed":
                _feed(parsed, value, owner, entry_time, f"{path}.value")
            elif network == "instagram" and field == "comments":
                _instagram_comment(parsed, value, owner, entry_time, f"{path}.value", f"entry[{e}]")
            else:
                parsed.ignore(parsed.next_index(), path=path)
        for m, event in enumerate(entry.get("messaging") or []):
            _message(parsed, event, owner, network, f"entry[{e}].messaging[{m}]")
    return parsed


def _entry_time(value: Any) -> datetime | None:
    """The entry's ``time`` (epoch seconds), None when it is missing or not a time: an item
    that needs it says so (a Facebook change has its own ``created_time``)."""
    try:
        value = _when(value)
    except ValueError:
        return None
    return value if isinstance(value, datetime) else None


def _feed(parsed: Parsed, value: Any, page_id: str, entry_time: Any, path: str) -> None:
    index = parsed.next_index()
    try:
        change = FeedChange.model_validate(value)
    except ValidationError as exc:
        parsed.reject(index, native_errors(exc, path), path=path)
        return
    if change.item == "comment":
        external_id, kind = change.comment_id, "comment"
        id_field = "comment_id"
    elif change.item in _POST_ITEMS:
        external_id, kind = change.post_id, "post"
        id_field = "post_id"
    else:
        parsed.ignore(index, path=path)  # reactions, likes, ...
        return
    if not external_id:
        parsed.reject(index, [FieldError(field=f"{path}.{id_field}", message="Field required")], path=path)
        return
    if change.verb in ("remove", "hide"):
        parsed.retractions.append(Retraction(
            index=index, source="facebook", external_id=external_id, retracted_at=change.created_time,
            reason="deleted" if change.verb == "remove" else "moderated", path=path))
        return
    if change.verb not in ("add", "edited"):
        parsed.ignore(index, path=path)
        return
    if change.from_ is None:
        parsed.reject(index, [FieldError(field=f"{path}.from", message="Field required")], path=path)
        return
    if change.from_.id == page_id:
        parsed.ignore(index, path=path)  # the page's own post or reply
        return
    occurred = change.created_time or entry_time
    in_reply_to = change.parent_id if kind == "comment" else None
    fields = {
        "source": "facebook", "kind": kind, "external_id": external_id,
        "url": f"https://www.facebook.com/{external_id}", "occurred_at": occurred,
        "author": {"identifiers": [{"type": "facebook", "value": change.from_.id}],
                   "display_name": change.from_.name},
        "text": change.message, "conversation_id": change.post_id, "in_reply_to": in_reply_to,
    }
    parsed.add(index, fields, path=path, field_names={"occurred_at": "created_time", "text": "message",
                                                      "author": "from"})


def _instagram_comment(parsed: Parsed, value: Any, account_id: str, entry_time: datetime | None, path: str,
                       entry_path: str) -> None:
    index = parsed.next_index()
    try:
        comment = InstagramComment.model_validate(value)
    except ValidationError as exc:
        parsed.reject(index, native_errors(exc, path), path=path)
        return
    if comment.from_.id == account_id:
        parsed.ignore(index, path=path)  # our own reply
        return
    if entry_time is None:  # a comment has no time of its own: the entry's is its time
        parsed.reject(index, [FieldError(field=f"{entry_path}.time", message="seconds since the epoch required")],
                      path=path)
        return
    identifiers = [{"type": "instagram", "value": comment.from_.id}]
    if comment.from_.username:
        identifiers.append({"type": "instagram_handle", "value": comment.from_.username})
    media_id = comment.media.id if comment.media else None
    fields = {
        "source": "instagram", "kind": "comment", "external_id": comment.id, "occurred_at": entry_time,
        "author": {"identifiers": identifiers, "display_name": comment.from_.username},
        "text": comment.text, "conversation_id": media_id, "in_reply_to": comment.parent_id or media_id,
    }
    parsed.add(index, fields, path=path, field_names={"author": "from"})


def _message(parsed: Parsed, event: Any, owner: str, network: str, path: str) -> None:
    index = parsed.next_index()
    if isinstance(event, dict) and "message" not in event:
        parsed.ignore(index, path=path)  # deliveries, reads, postbacks, reactions
        return
    try:
        messaging = Messaging.model_validate(event)
    except ValidationError as exc:
        parsed.reject(index, native_errors(exc, path), path=path)
        return
    message = messaging.message
    if message is None or message.is_echo or messaging.sender.id == owner:
        parsed.ignore(index, path=path)  # what the page itself sent
        return
    fields = {
        "source": network, "kind": "direct_message", "external_id": message.mid,
        "occurred_at": messaging.timestamp,
        "author": {"identifiers": [{"type": network, "value": messaging.sender.id}]},
        "text": message.text, "conversation_id": f"{owner}:{messaging.sender.id}",
        "in_reply_to": (message.reply_to or {}).get("mid"),
    }
    parsed.add(index, fields, path=path, field_names={"occurred_at": "timestamp", "author": "sender",
                                                      "external_id": "message.mid", "text": "message.text"})
