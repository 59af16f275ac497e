"""The audit log: who did what to which customer, when and why. Details never hold
identifier values (an erased person must not live on in the log)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlmodel import Session

from socialzone_common.envelope import now_utc
from socialzone_identity.models import AuditEntry

ACTIONS = ("merge", "unmerge", "consent", "erasure", "export", "pii_read", "suggestion", "identifier")


def record(session: Session, *, actor: str, action: str, customer_id: str | None, reason: str | None = None,
           **detail: Any) -> None:
    session.execute(insert(AuditEntry.__table__).values(
        at=now_utc(), actor=actor[:128], action=action, customer_id=customer_id,
        reason=(reason or None) and reason[:1000], detail=detail or None))
