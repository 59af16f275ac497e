"""Small data helpers shared by the identity domain modules: ids, locks, following merges."""

from __future__ import annotations

from sqlalchemy import bindparam, select
from sqlmodel import Session

from socialzone_common import db
from socialzone_common.errors import Conflict, NotFound
from socialzone_common.ids import uuid4_text
from socialzone_identity.identifiers import Normalized
from socialzone_identity.models import Customer

SOURCE = "socialzone/identity"
C = Customer.__table__


_STATUS = select(C.c.status, C.c.merged_into).where(C.c.id == bindparam("id"))
_STATUS_MANY = select(C.c.id, C.c.status, C.c.merged_into).where(C.c.id.in_(bindparam("ids", expanding=True)))


def new_customer_id() -> str:
    return "cus_" + uuid4_text().replace("-", "")


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def lock_identifiers(session: Session, identifiers: list[Normalized]) -> None:
    """On PostgreSQL: a transaction-scoped advisory lock per identifier, in one global
    order (so two transactions never wait on each other in a cycle).

    Two transactions that see the same new identifier serialize here: the second
    waits until the first commits, and its next statement (READ COMMITTED) sees the
    identifier the first one linked, so it attaches instead of creating a second
    customer. The unique constraint on ``identifiers(type, value)`` is the backstop:
    were a path to skip the lock, its insert fails and the worker retries the event.
    On SQLite the transaction takes the database's one writer turn now, before its reads."""
    db.lock_keys(session, "identity", [i.key for i in identifiers])


def chase(session: Session, customer_id: str) -> tuple[str, str] | None:
    """Follow ``merged_into`` to the customer that answers for ``customer_id``:
    ``(id, status)`` of the end of the chain, or None for an unknown id."""
    seen = set()
    current = customer_id
    while current not in seen:
        seen.add(current)
        row = session.connection().execute(_STATUS, {"id": current}).first()
        if row is None:
            return None
        if row.status == "merged" and row.merged_into:
            current = row.merged_into
            continue
        return current, row.status
    return None  # a cycle cannot be written, but never loop


def chase_many(session: Session, customer_ids) -> dict[str, tuple[str, str] | None]:
    """:func:`chase` for many ids: one query per level of ``merged_into`` (usually one)."""
    known: dict[str, tuple[str, str | None] | None] = {}  # id -> (status, merged_into); None: no such id
    wanted = set(customer_ids)
    conn = session.connection()
    while wanted:
        ordered = sorted(wanted)
        for i in range(0, len(ordered), 500):
            for row in conn.execute(_STATUS_MANY, {"ids": ordered[i:i + 500]}):
                known[row.id] = (row.status, row.merged_into)
        for customer_id in ordered:
            known.setdefault(customer_id, None)
        wanted = {row[1] for row in known.values()
                  if row is not None and row[0] == "merged" and row[1] and row[1] not in known}
    result: dict[str, tuple[str, str] | None] = {}
    for customer_id in set(customer_ids):
        seen = set()
        current, found = customer_id, None
        while current not in seen:
            seen.add(current)
            row = known.get(current)
            if row is None:
                break
            if row[0] == "merged" and row[1]:
                current = row[1]
                continue
            found = (current, row[0])
            break
        result[customer_id] = found
    return result


def lock_customer(session: Session, customer_id: str) -> Customer:
    """The active customer that answers for ``customer_id``, row-locked for this
    transaction (PostgreSQL ``FOR UPDATE``). A concurrent merge that commits while we
    wait is followed to its survivor, so nothing is ever attached to a merged profile. (On
    SQLite the transaction holds the database's writer turn from here: the same effect.)"""
    db.begin_writing(session)
    seen = set()
    current = customer_id
    while current not in seen:
        seen.add(current)
        statement = select(Customer).where(Customer.id == current).execution_options(populate_existing=True)
        if is_postgres(session):
            statement = statement.with_for_update()
        customer = session.execute(statement).scalar_one_or_none()
        if customer is None:
            raise NotFound(f"customer {customer_id} not found")
        if customer.status == "merged" and customer.merged_into:
            current = customer.merged_into
            continue
        if customer.status == "erased":
            raise NotFound(f"customer {customer_id} was erased")
        return customer
    raise Conflict(f"customer {customer_id}: merge chain loops")


def active_customer(session: Session, customer_id: str) -> Customer:
    """The customer that answers for ``customer_id`` (following merges), unlocked; 404 if none."""
    found = chase(session, customer_id)
    if found is None or found[1] == "erased":
        raise NotFound(f"customer {customer_id} not found" if found is None else f"customer {customer_id} was erased")
    return session.get(Customer, found[0])


def descendants(session: Session, customer_id: str) -> list[str]:
    """Customers merged (directly or through others) into ``customer_id`` and still merged."""
    found: list[str] = []
    frontier = [customer_id]
    while frontier:
        rows = session.execute(select(C.c.id).where(C.c.merged_into.in_(frontier), C.c.status == "merged")).scalars().all()
        rows = [r for r in rows if r not in found and r != customer_id]
        found.extend(rows)
        frontier = rows
    return found
