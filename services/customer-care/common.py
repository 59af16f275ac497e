"""Small helpers every part of customer care uses: publishing through the outbox and the case history."""

from __future__ import annotations

import hashlib
import time
from datetime import datetime

from sqlalchemy import insert
from sqlmodel import Session

from socialzone_common import outbox
from socialzone_common.events.common import ZoneEvent
from socialzone_care.models import Case, CaseActivity

SOURCE = "socialzone/care"


def emit(session: Session, payload: ZoneEvent) -> None:
    """Publish ``payload`` with the caller's transaction (the transactional outbox)."""
    outbox.enqueue(session, payload.to_envelope(source=SOURCE))


def activity(session: Session, case: Case, kind: str, now: datetime, **detail) -> None:
    # A Core insert: the history is written once and never read back in the transaction,
    # and building an ORM object per entry is a good part of the cost of opening a case.
    session.execute(insert(CaseActivity.__table__).values(case_id=case.id, at=now, kind=kind, detail=detail))


def digest(customer_id: str) -> str:
    return hashlib.sha256(f"care-erasure:{customer_id}".encode()).hexdigest()


# --- configuration cache ---------------------------------------------------------------------
# Rules, queues, queue members, calendars, SLA policies and active crises are read for every
# case but change rarely. Each process keeps them for a few seconds per database; a change
# made through this process (an API write, a crisis event) clears them at once, another
# replica sees it within CONFIG_TTL_S.
#
# "Per database" is per engine: on PostgreSQL two services (or two tests) on one server URL
# differ only by their schema (the engine's search_path), which the URL does not show. An
# entry keeps its engine, so the key (its id) cannot be reused while the entry lives.

CONFIG_TTL_S = 2.0
_cache: dict[tuple[int, str, str], tuple[float, object, object]] = {}


def cached(session: Session, kind: str, key: str, load):
    bind = session.info.get("care.bind")
    if bind is None:
        bind = session.info["care.bind"] = session.get_bind()
    entry = (id(bind), kind, key)
    hit = _cache.get(entry)
    if hit is not None and time.monotonic() - hit[0] < CONFIG_TTL_S:
        return hit[1]
    value = load()
    now = time.monotonic()
    if len(_cache) > 256:  # forget expired entries (and the engines of runtimes long gone)
        for old in [k for k, v in _cache.items() if now - v[0] >= CONFIG_TTL_S]:
            del _cache[old]
    _cache[entry] = (now, value, bind)
    return value


def invalidate() -> None:
    _cache.clear()
