"""Opaque cursors: what a client gets back from a list is what it can send again, and
anything else is a 422 that names ``cursor``."""

from __future__ import annotations

import base64
import re

import httpx
import pytest
from fastapi import APIRouter, Query
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import MetaData

from socialzone_common.deps import require
from socialzone_common.errors import Unprocessable
from socialzone_common.pagination import MAX_LIMIT, Page, decode_cursor, encode_cursor, page_of
from socialzone_common.service import ServiceSpec
from socialzone_common.web import build_host_app
from tests.conftest import bearer

ITEMS = [{"id": n, "name": f"item {n}"} for n in range(1, 8)]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=10)
positions = st.dictionaries(st.text(), json_values, max_size=5)
deterministic = hypothesis_settings(derandomize=True, database=None, max_examples=300)


# --- the cursor itself ---

@deterministic
@given(positions)
def test_any_position_survives_a_round_trip_through_a_url_safe_cursor(position):
    cursor = encode_cursor(position)
    assert re.fullmatch(r"[A-Za-z0-9_-]*", cursor)
    assert decode_cursor(cursor) == position


@deterministic
@given(st.text() | st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_="))
def test_any_text_is_either_a_position_or_a_422_naming_cursor(text):
    try:
        position = decode_cursor(text)
    except Unprocessable as exc:
        assert exc.status == 422
        assert exc.extensions["errors"][0]["field"] == "cursor"
    else:
        assert position is None or isinstance(position, dict)


def test_no_cursor_means_the_first_page():
    assert decode_cursor(None) is None
    assert decode_cursor("") is None


def test_expected_keys_and_types_are_enforced():
    assert decode_cursor(encode_cursor({"id": 3}), expect={"id": int}) == {"id": 3}
    for edited in ({"id": "3"}, {"id": True}, {"id": 3, "extra": 1}, {}, {"other": 3}):
        with pytest.raises(Unprocessable):
            decode_cursor(encode_cursor(edited), expect={"id": int})


def test_an_expected_value_no_column_can_hold_is_refused():
    # Else a 500 in the query: SQLite's OverflowError, PostgreSQL's "integer out of range"
    # and "text fields cannot contain NUL".
    for edited in (2**63, 2**64 - 1, -(2**63) - 1, 10**30):
        with pytest.raises(Unprocessable):
            decode_cursor(base64.urlsafe_b64encode(b'{"id": %d}' % edited).decode(), expect={"id": int})
    with pytest.raises(Unprocessable):
        decode_cursor(encode_cursor({"id": "a\x00b"}), expect={"id": str})
    assert decode_cursor(encode_cursor({"id": 2**63 - 1}), expect={"id": int}) == {"id": 2**63 - 1}
    assert decode_cursor(encode_cursor({"id": -(2**63)}), expect={"id": int}) == {"id": -(2**63)}


def test_page_of_gives_a_next_cursor_only_when_more_rows_exist():
    position = lambda row: {"id": row["id"]}  # noqa: E731
    page, next_cursor = page_of(ITEMS[:4], 3, position)
    assert page == ITEMS[:3]
    assert decode_cursor(next_cursor) == {"id": 3}  # the last item of this page
    assert page_of(ITEMS[:3], 3, position) == (ITEMS[:3], None)
    assert page_of(ITEMS[:2], 3, position) == (ITEMS[:2], None)
    assert page_of([], 3, position) == ([], None)


# --- through a paginated endpoint ---

def catalog_spec(tmp_path) -> ServiceSpec:
    router = APIRouter()

    @router.get("/items", dependencies=[require("catalog:read")])
    def list_items(limit: int = Query(3, ge=1, le=MAX_LIMIT), cursor: str | None = None) -> Page[dict]:
        position = decode_cursor(cursor, expect={"id": int})
        after = position["id"] if position else 0
        rows = [item for item in ITEMS if item["id"] > after][:limit + 1]
        items, next_cursor = page_of(rows, limit, lambda row: {"id": row["id"]})
        return Page(items=items, next_cursor=next_cursor)

    migrations = tmp_path / "catalog_migrations"
    (migrations / "versions").mkdir(parents=True)
    (migrations / "env.py").write_text(
        "from sqlalchemy import MetaData\n"
        "from socialzone_common.db import run_alembic_env\n"
        "run_alembic_env(MetaData())\n")
    return ServiceSpec(name="catalog", title="Catalog", description="test only", migrations=migrations,
                       metadata=MetaData(), routers=lambda: [router])


@pytest.fixture
async def client(settings, tmp_path):
    host = build_host_app([catalog_spec(tmp_path)], settings=settings, service_settings={"catalog": settings})
    async with host.router.lifespan_context(host):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=host), base_url="http://test",
                                     headers=bearer("admin")) as client:
            yield client


async def test_following_next_cursor_visits_every_item_once_in_order(client):
    seen, cursor, pages = [], None, 0
    while True:
        response = await client.get("/catalog/v1/items", params={"limit": 3, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        seen += response.json()["items"]
        pages += 1
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == ITEMS
    assert pages == 3


async def test_a_page_that_ends_exactly_at_the_last_item_has_no_next_cursor(client):
    response = await client.get("/catalog/v1/items", params={"limit": len(ITEMS)})
    assert response.json() == {"items": ITEMS, "next_cursor": None}


@pytest.mark.parametrize("cursor", [
    "garbage!",                                                    # not base64
    "a",                                                           # impossible base64 length
    base64.urlsafe_b64encode(b"\xff\xfe not json").decode(),       # not JSON
    encode_cursor({"id": 3})[:-3],                                 # truncated
    base64.urlsafe_b64encode(b"[3]").decode(),                     # JSON, not an object
    encode_cursor({"id": "3 OR 1=1"}),                             # edited: wrong type
    encode_cursor({"after": 3}),                                   # edited: wrong key
    encode_cursor({"id": 2**64 - 1}),                              # edited: wider than any column
])
async def test_a_cursor_this_api_did_not_hand_out_is_a_422_naming_cursor(client, cursor):
    response = await client.get("/catalog/v1/items", params={"cursor": cursor})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["errors"] == [{"field": "cursor", "message": "not a cursor returned by this API"}]
    assert body["detail"].startswith("cursor: ")


async def test_a_limit_above_the_maximum_is_a_422_naming_limit(client):
    response = await client.get("/catalog/v1/items", params={"limit": MAX_LIMIT + 1})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "limit"
