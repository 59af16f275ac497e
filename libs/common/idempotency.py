"""``Idempotency-Key`` for writes that clients may retry.

The first request with a key runs and its response (if not a 5xx, a 401/403 or a
"later" such as 429) is stored with its headers; a
retry with the same key and the same request gets the stored response again
(``Idempotent-Replayed: true``) without running twice; the same key with a
different request is a 422; a retry while the first is still running is a 409
(after ``lock_timeout`` the first is taken for dead, e.g. its process was killed,
and the retry runs). Keys are scoped to the caller's credentials and the route (method
and path), and expire after ``ttl``.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import datetime, timedelta

import orjson
from sqlalchemy import Column, LargeBinary, delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker
from sqlmodel import Field, Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from socialzone_common.db import PlatformTable, UtcDateTime
from socialzone_common.envelope import now_utc
from socialzone_common.errors import problem_response

HEADER = b"idempotency-key"
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
MAX_KEY_LENGTH = 255
# Responses that say nothing about the request itself: the retry must run for real.
_NOT_STORED = {401, 403, 408, 429}
# A replay sends the original headers, but not those of the connection or of that moment.
_NOT_REPLAYED_HEADERS = {b"content-length", b"transfer-encoding", b"connection", b"keep-alive", b"date", b"server"}


class IdempotencyRecord(PlatformTable, table=True):
    __tablename__ = "idempotency_keys"

    caller: str = Field(primary_key=True, max_length=64)
    key: str = Field(primary_key=True, max_length=MAX_KEY_LENGTH)
    fingerprint: str = Field(max_length=64)
    status_code: int | None = None
    headers: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    body: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    created_at: datetime = Field(default_factory=now_utc, index=True, sa_type=UtcDateTime)


# A request with a key is buffered to fingerprint it: cap what may be buffered, so the
# key is no way around a service's own (streaming) size limit.
MAX_BODY_BYTES = 32 * 1024 * 1024


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp, *, sessions: sessionmaker[Session], ttl: timedelta = timedelta(hours=24),
                 lock_timeout: timedelta = timedelta(minutes=5), max_body_bytes: int | None = None):
        self.app, self.sessions, self.ttl, self.lock_timeout = app, sessions, ttl, lock_timeout
        self.max_body_bytes = max_body_bytes or MAX_BODY_BYTES

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in WRITE_METHODS:
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        key = headers.get(HEADER, b"").decode(errors="replace").strip()
        if not key or b"authorization" not in headers:
            # Without credentials the request is refused anyway: nothing to remember,
            # and anonymous callers must not be able to fill the table.
            return await self.app(scope, receive, send)
        if len(key) > MAX_KEY_LENGTH:
            return await _send_problem(scope, receive, send, 422, "Idempotency-Key",
                                       f"at most {MAX_KEY_LENGTH} characters")

        body = await _read_body(receive, self.max_body_bytes)
        if body is None:
            return await _send_problem(scope, receive, send, 413, "body",
                                       f"a request with an Idempotency-Key may carry at most {self.max_body_bytes} bytes")
        # Scoped to the credentials and the route: the same key sent to another URL (such as
        # the trailing-slash variant the router redirects from) is another request, not a reuse.
        caller = hashlib.sha256(b"\0".join(
            [headers.get(b"authorization", b""), scope["method"].encode(), scope["path"].encode()])).hexdigest()
        fingerprint = hashlib.sha256(b"\0".join(
            [scope["method"].encode(), scope["path"].encode(), scope.get("query_string", b""), body])).hexdigest()

        outcome, stored = await asyncio.to_thread(self._begin, caller, key, fingerprint)
        if outcome == "mismatch":
            return await _send_problem(scope, receive, send, 422, "Idempotency-Key",
                                       "this key was already used with a different request")
        if outcome == "in_progress":
            return await _send_problem(scope, receive, send, 409, "Idempotency-Key",
                                       "a request with this key is still being processed")
        if outcome == "replay":
            return await _replay(stored, send)

        captured: dict = {"status": 500, "headers": [], "body": b""}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                captured["headers"] = [(k, v) for k, v in message.get("headers", [])]
            elif message["type"] == "http.response.body":
                captured["body"] += message.get("body", b"")
            await send(message)

        try:
            await self.app(scope, _replaying(body), capture)
        except BaseException:
            await asyncio.to_thread(self._forget, caller, key)
            raise
        if captured["status"] >= 500 or captured["status"] in _NOT_STORED:
            # A server error may be retried for real; so may a request refused for its
            # credentials (the caller fixes its key and retries with the same key), or
            # turned away for now (429: the caller retries after Retry-After, same key).
            await asyncio.to_thread(self._forget, caller, key)
        else:
            await asyncio.to_thread(self._finish, caller, key, captured)

    def _begin(self, caller: str, key: str, fingerprint: str) -> tuple[str, IdempotencyRecord | None]:
        with self.sessions() as session:
            session.exec(delete(IdempotencyRecord).where(IdempotencyRecord.created_at < now_utc() - self.ttl))
            session.commit()
            existing = session.get(IdempotencyRecord, (caller, key))
            if existing is not None:
                if existing.fingerprint != fingerprint:
                    return "mismatch", None
                if existing.status_code is not None:
                    return "replay", existing
                # Still running, unless it started so long ago that its process must have died.
                taken = session.exec(update(IdempotencyRecord).where(
                    IdempotencyRecord.caller == caller, IdempotencyRecord.key == key,
                    IdempotencyRecord.status_code.is_(None),
                    IdempotencyRecord.created_at < now_utc() - self.lock_timeout,
                ).values(created_at=now_utc()).execution_options(synchronize_session=False))
                session.commit()
                return ("run", None) if taken.rowcount else ("in_progress", None)
            session.add(IdempotencyRecord(caller=caller, key=key, fingerprint=fingerprint))
            try:
                session.commit()
            except IntegrityError:  # a concurrent twin got there first
                return "in_progress", None
            return "run", None

    def _finish(self, caller: str, key: str, captured: dict) -> None:
        kept = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in captured["headers"]
                if k.lower() not in _NOT_REPLAYED_HEADERS]
        with self.sessions() as session:
            record = session.get(IdempotencyRecord, (caller, key))
            if record is not None:
                record.status_code, record.body = captured["status"], captured["body"]
                record.headers = orjson.dumps(kept)
                session.commit()

    def _forget(self, caller: str, key: str) -> None:
        with self.sessions() as session:
            session.exec(delete(IdempotencyRecord).where(IdempotencyRecord.caller == caller,
                                                         IdempotencyRecord.key == key))
            session.commit()


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it passes ``limit`` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _replaying(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


async def _replay(record: IdempotencyRecord, send: Send) -> None:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in orjson.loads(record.headers or b"[]")]
    headers.append((b"idempotent-replayed", b"true"))
    headers.append((b"content-length", str(len(record.body or b"")).encode()))
    await send({"type": "http.response.start", "status": record.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": record.body or b""})


async def _send_problem(scope: Scope, receive: Receive, send: Send, status: int, field: str, message: str) -> None:
    title = {409: "Idempotency-Key conflict", 413: "Payload too large"}.get(status, "Invalid input")
    response = problem_response(status, title,
                                f"{field}: {message}", slug="idempotency",
                                errors=[{"field": field, "message": message}])
    await response(scope, receive, send)
