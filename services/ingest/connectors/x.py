"""X (Twitter) API v2: a response with ``data`` posts and ``includes.users``, or the
compliance stream's events (``{"data": {"delete": {"tweet": {"id", "author_id"}, "event_at"}}}``).

- An edited post is one interaction: it is keyed by the first id of
  ``edit_history_tweet_ids``; its later ids are kept as aliases (a delete notice may name any).
- ``delete`` retracts (reason deleted), ``drop`` retracts (reason moderated); other
  compliance events (withheld, undrop, tweet_edit) record nothing. A post carrying its own
  ``withheld`` field is a post, not such an event.
- A response with no results has no ``data`` (``{"meta": {"result_count": 0}}``): nothing to record.
- Kind: ``reply`` when the post replies to another, ``mention`` when it mentions an
  account, ``post`` otherwise.
"""

from __future__ import annotations

from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from socialzone_ingest.connectors import Parsed, Retraction, language, native_errors
from socialzone_ingest.models import FieldError

SOURCE = "x"
_ID = r"^[0-9]{1,20}$"


class _Native(BaseModel):
    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)


class XUserMetrics(_Native):
    followers_count: int | None = Field(default=None, ge=0)


class XUser(_Native):
    id: str = Field(pattern=_ID)
    username: str = Field(min_length=1, max_length=50)
    name: str | None = None
    description: str | None = None
    location: str | None = None
    profile_image_url: str | None = None
    verified: bool | None = None
    public_metrics: XUserMetrics | None = None


class XReference(_Native):
    type: str
    id: str = Field(pattern=_ID)


class XMention(_Native):
    username: str
    id: str | None = None


class XEntities(_Native):
    mentions: list[XMention] = []


class XPostMetrics(_Native):
    retweet_count: int | None = None
    reply_count: int | None = None
    like_count: int | None = None
    quote_count: int | None = None
    bookmark_count: int | None = None
    impression_count: int | None = None


class XPost(_Native):
    id: str = Field(pattern=_ID)
    text: str
    author_id: str = Field(pattern=_ID)
    created_at: AwareDatetime
    conversation_id: str | None = None
    in_reply_to_user_id: str | None = None
    referenced_tweets: list[XReference] = []
    entities: XEntities | None = None
    public_metrics: XPostMetrics | None = None
    lang: str | None = None
    edit_history_tweet_ids: list[str] = []


class XComplianceTweet(_Native):
    id: str = Field(pattern=_ID)
    author_id: str | None = None


class XComplianceEvent(_Native):
    tweet: XComplianceTweet
    event_at: AwareDatetime | None = None


_METRICS = {"like_count": "likes", "retweet_count": "reposts", "reply_count": "replies",
            "quote_count": "quotes", "bookmark_count": "bookmarks", "impression_count": "views"}
_COMPLIANCE_RETRACTS = {"delete": "deleted", "drop": "moderated"}
_COMPLIANCE_OTHERS = {"withheld", "undrop", "tweet_edit", "scrub_geo"}


def parse(payload: Any) -> Parsed:
    """A v2 response, one compliance event, or a list of compliance events."""
    parsed = Parsed()
    if isinstance(payload, list):
        for n, event in enumerate(payload):
            _compliance(parsed, event, f"[{n}]")
        return parsed
    if _empty_result(payload):
        return parsed  # a search or timeline page with nothing in it: nothing to record
    if not isinstance(payload, dict) or "data" not in payload:
        parsed.reject(parsed.next_index(), [FieldError(field="data", message="Field required")])
        return parsed
    data = payload["data"]
    if _is_compliance(data):
        _compliance(parsed, payload, "")
        return parsed
    users = _users(payload.get("includes"))
    posts = data if isinstance(data, list) else [data]
    for n, raw in enumerate(posts):
        _post(parsed, raw, users, "data" if isinstance(data, dict) else f"data[{n}]")
    return parsed


def _empty_result(payload: Any) -> bool:
    """X omits ``data`` from a response with no results: ``{"meta": {"result_count": 0}}``."""
    if not isinstance(payload, dict) or "data" in payload:
        return False
    meta = payload.get("meta")
    return isinstance(meta, dict) and meta.get("result_count") == 0


def _is_compliance(data: Any) -> bool:
    """``{"delete": {"tweet": ...}}`` and the like. A post has an ``id``, and may carry a
    ``withheld`` field of its own (the countries it is withheld in): it is still a post."""
    return (isinstance(data, dict) and "id" not in data
            and any(k in data for k in (*_COMPLIANCE_RETRACTS, *_COMPLIANCE_OTHERS)))


def _users(includes: Any) -> dict[str, XUser]:
    users = {}
    if isinstance(includes, dict):
        for raw in includes.get("users") or []:
            try:
                user = XUser.model_validate(raw)
            except ValidationError:
                continue  # a malformed user only costs the author's details, not the post
            users[user.id] = user
    return users


def _post(parsed: Parsed, raw: Any, users: dict[str, XUser], path: str) -> None:
    index = parsed.next_index()
    try:
        post = XPost.model_validate(raw)
    except ValidationError as exc:
        parsed.reject(index, native_errors(exc, path), path=path)
        return
    user = users.get(post.author_id)
    identifiers = [{"type": "x", "value": post.author_id}]
    author: dict[str, Any] = {"identifiers": identifiers}
    if user is not None:
        identifiers.append({"type": "x_handle", "value": user.username})
        author["display_name"] = user.name
        if user.public_metrics and user.public_metrics.followers_count is not None:
            author["followers"] = user.public_metrics.followers_count
        attributes = {k: v for k, v in {"bio": user.description, "location": user.location,
                                        "avatar_url": user.profile_image_url,
                                        "verified": user.verified}.items() if v not in (None, "")}
        if attributes:
            author["attributes"] = attributes
    replied_to = next((r.id for r in post.referenced_tweets if r.type == "replied_to"), None)
    mentions = post.entities.mentions if post.entities else []
    kind = "reply" if replied_to else "mention" if mentions else "post"
    history = [i for i in post.edit_history_tweet_ids if i]
    first_id = history[0] if history else post.id
    url = (f"https://x.com/{user.username}/status/{post.id}" if user
           else f"https://x.com/i/web/status/{post.id}")
    metrics = {}
    if post.public_metrics is not None:
        metrics = {name: getattr(post.public_metrics, field) for field, name in _METRICS.items()
                   if getattr(post.public_metrics, field) is not None}
    fields = {
        "source": SOURCE, "kind": kind, "external_id": first_id, "url": url,
        "occurred_at": post.created_at, "author": author, "text": post.text,
        "language": language(post.lang), "conversation_id": post.conversation_id,
        "in_reply_to": replied_to, "metrics": metrics,
    }
    parsed.add(index, fields, path=path, aliases=tuple(dict.fromkeys([*history, post.id])),
               field_names={"author": "author_id", "occurred_at": "created_at", "external_id": "id",
                            "language": "lang", "text": "text", "metrics": "public_metrics"},
               identifier_fields=("author_id", "includes.users.username"))


def _compliance(parsed: Parsed, event: Any, path: str) -> None:
    index = parsed.next_index()
    data = event.get("data") if isinstance(event, dict) else None
    here = f"{path}.data" if path else "data"
    if not isinstance(data, dict):
        parsed.reject(index, [FieldError(field=here, message="a compliance event object is required")], path=path)
        return
    kind = next((k for k in data if k in _COMPLIANCE_RETRACTS or k in _COMPLIANCE_OTHERS), None)
    if kind is None:
        parsed.reject(index, [FieldError(field=here, message="not a post compliance event (delete, drop, ...)")],
                      path=path)
        return
    if kind not in _COMPLIANCE_RETRACTS:
        parsed.ignore(index, path=f"{here}.{kind}")
        return
    try:
        notice = XComplianceEvent.model_validate(data[kind])
    except ValidationError as exc:
        parsed.reject(index, native_errors(exc, f"{here}.{kind}"), path=path)
        return
    parsed.retractions.append(Retraction(index=index, source=SOURCE, external_id=notice.tweet.id,
                                         retracted_at=notice.event_at, reason=_COMPLIANCE_RETRACTS[kind],
                                         path=f"{here}.{kind}"))
