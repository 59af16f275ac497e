"""Opaque cursor pagination: a cursor is the keyset of the last item, base64url JSON."""

from __future__ import annotations

import base64
from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel

from socialzone_common.errors import Unprocessable

T = TypeVar("T")
MAX_LIMIT = 500
# What a database column can hold: a wider integer is an OverflowError in SQLite and an
# "out of range" error in PostgreSQL, and PostgreSQL text cannot hold NUL.
_INT_RANGE = range(-(2**63), 2**63)


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def encode_cursor(position: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(position)).decode().rstrip("=")


def decode_cursor(cursor: str | None, *, expect: dict[str, type] | None = None) -> dict[str, Any] | None:
    """The position a cursor stands for; a 422 naming ``cursor`` when it is not one of ours.

    A cursor is not signed: pass ``expect`` (key -> type, e.g. ``{"id": int}``) so that an
    edited one is a 422 here rather than a 500 in the query that uses it (integers must fit
    64 bits and text must not contain NUL, as in any column).
    """
    if not cursor:
        return None
    try:
        position = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        position = None
    if expect is not None and isinstance(position, dict) and not (
            position.keys() == expect.keys() and all(type(position[k]) is t for k, t in expect.items())
            and all(_fits_a_column(v) for v in position.values())):
        position = None
    if not isinstance(position, dict):
        raise Unprocessable("cursor: not a cursor returned by this API", errors=[
            {"field": "cursor", "message": "not a cursor returned by this API"}])
    return position


def _fits_a_column(value: Any) -> bool:
    if type(value) is int:
        return value in _INT_RANGE
    if type(value) is str:
        return "\x00" not in value
    return True


def page_of(rows: list, limit: int, position_of) -> tuple[list, str | None]:
    """Split ``limit + 1`` fetched rows into a page and the cursor of the next one."""
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, encode_cursor(position_of(rows[-1]))
    return rows, None
