"""Reddit listing JSON: a ``Listing`` of posts (``t3``) and comments (``t1``), or the array
of two listings a comments page returns (the post, then its comment tree; ``replies``
are followed).

- The key is the fullname (``name``: ``t3_abc``, ``t1_def``).
- A post's text is its title and ``selftext``; a comment's is its ``body``.
- ``[deleted]`` / ``[removed]`` in place of the text retracts what was recorded
  (deleted by the author / removed by the moderators); nothing new is recorded.
- ``score`` may be negative. ``more`` stubs are ignored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from socialzone_ingest.connectors import Parsed, Retraction, epoch, native_errors
from socialzone_ingest.models import FieldError

SOURCE = "reddit"
_GONE = {"[deleted]": "deleted", "[removed]": "moderated"}


class _Native(BaseModel):
    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)


class Thing(_Native):
    name: str = Field(pattern=r"^t[13]_[0-9a-z]+$")
    author: str = Field(min_length=1)
    subreddit: str | None = None
    created_utc: datetime

    @field_validator("created_utc", mode="before")
    @classmethod
    def _epoch(cls, value: Any) -> Any:
        # converted while validating, so that an out-of-range time is reported on its field
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return epoch(value)
        return value
    permalink: str | None = None
    score: int | None = None
    num_comments: int | None = None
    title: str | None = None
    selftext: str | None = None
    body: str | None = None
    parent_id: str | None = None
    link_id: str | None = None


def parse(payload: Any) -> Parsed:
    parsed = Parsed()
    if isinstance(payload, list):
        for n, listing in enumerate(payload):
            _listing(parsed, listing, f"[{n}]")
    else:
        _listing(parsed, payload, "")
    return parsed


def _listing(parsed: Parsed, listing: Any, path: str) -> None:
    children = listing.get("data", {}).get("children") if isinstance(listing, dict) and isinstance(
        listing.get("data"), dict) else None
    if not isinstance(listing, dict) or listing.get("kind") != "Listing" or not isinstance(children, list):
        where = f"{path}.data.children" if path else "data.children"
        parsed.reject(parsed.next_index(), [FieldError(field=where, message="a Listing with data.children is required")])
        return
    base = f"{path}.data.children" if path else "data.children"
    for n, child in enumerate(children):
        _thing(parsed, child, f"{base}[{n}]")


def _thing(parsed: Parsed, child: Any, path: str) -> None:
    kind = child.get("kind") if isinstance(child, dict) else None
    if kind == "more":
        return
    index = parsed.next_index()
    if kind not in ("t1", "t3"):
        parsed.reject(index, [FieldError(field=f"{path}.kind", message="must be t1 (comment) or t3 (post)")],
                      path=path)
        return
    raw = child.get("data")
    try:
        thing = Thing.model_validate(raw)
    except ValidationError as exc:
        parsed.reject(index, native_errors(exc, f"{path}.data"), path=path)
        return
    text_field = "selftext" if kind == "t3" else "body"
    body = getattr(thing, text_field)
    gone = _GONE.get((body or "").strip()) or _GONE.get(thing.author)  # the account was deleted
    if gone:
        parsed.retractions.append(Retraction(index=index, source=SOURCE, external_id=thing.name, reason=gone,
                                             path=path))
    else:
        if kind == "t3":
            text = "\n\n".join(p for p in (thing.title, thing.selftext) if p)
        else:
            text = thing.body
        metrics = {k: v for k, v in (("score", thing.score), ("replies", thing.num_comments)) if v is not None}
        fields = {
            "source": SOURCE, "kind": "post" if kind == "t3" else "comment", "external_id": thing.name,
            "url": f"https://www.reddit.com{thing.permalink}" if thing.permalink else None,
            "occurred_at": thing.created_utc,
            "author": {"identifiers": [{"type": "reddit", "value": thing.author}], "display_name": thing.author},
            "text": text, "conversation_id": thing.link_id or (thing.name if kind == "t3" else None),
            "in_reply_to": thing.parent_id if kind == "t1" else None, "metrics": metrics,
        }
        parsed.add(index, fields, path=path, field_names={"text": f"data.{text_field}", "author": "data.author",
                                                          "url": "data.permalink"})
    replies = raw.get("replies") if isinstance(raw, dict) else None
    if isinstance(replies, dict):
        _listing(parsed, replies, f"{path}.data.replies")
