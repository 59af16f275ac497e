"""Edges of the interaction API: bodies that are not what a client meant to send (a BOM,
scalars, NDJSON line ends), the enrich endpoint's input and payload limit, and the list's
filters. Real HTTP through the ASGI app."""

from __future__ import annotations

import orjson
import pytest

from socialzone_ingest.domain import author_key_for

from tests.ingest.conftest import READER, WRITER, serving, stored
from tests.ingest.test_interactions_api import post_item

INTERACTIONS = "/ingest/v1/interactions"
BOM = b"\xef\xbb\xbf"


def body_of(value) -> bytes:
    return orjson.dumps(value)


# --- bodies ------------------------------------------------------------------------------------------

async def test_a_json_body_with_a_byte_order_mark_is_read_like_one_without(client):
    single = await client.post(INTERACTIONS, content=BOM + body_of(post_item(1)),
                               headers={**WRITER, "Content-Type": "application/json"})
    batch = await client.post(INTERACTIONS, content=BOM + body_of([post_item(2), post_item(3, kind="tweet")]),
                              headers={**WRITER, "Content-Type": "application/json"})
    ndjson = await client.post(INTERACTIONS, content=BOM + body_of(post_item(4)) + b"\n",
                               headers={**WRITER, "Content-Type": "application/x-ndjson"})

    assert single.status_code == 202, single.text
    assert single.json()["status"] == "accepted"
    assert batch.status_code == 202, batch.text
    assert [(r["index"], r["status"]) for r in batch.json()["results"]] == [(0, "accepted"), (1, "rejected")]
    assert ndjson.status_code == 202, ndjson.text
    assert [(r["line"], r["status"]) for r in ndjson.json()["results"]] == [(1, "accepted")]
    assert len(stored(client)) == 3


@pytest.mark.parametrize("body", [b"5", b'"an interaction"', b"null", b"[]", b"", b"  \n", b'{"source": "\xff"}'])
async def test_a_body_that_is_not_an_interaction_or_a_batch_is_a_422_naming_the_body(client, body):
    response = await client.post(INTERACTIONS, content=body, headers={**WRITER, "Content-Type": "application/json"})

    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "body"
    assert stored(client) == []


async def test_ndjson_with_crlf_blank_lines_and_no_final_newline_reports_each_line(client):
    body = (body_of(post_item(1)) + b"\r\n\r\n" + body_of(post_item(2, occurred_at="soon")) + b"\r\n"
            + body_of(post_item(3)))
    response = await client.post(INTERACTIONS, content=body,
                                 headers={**WRITER, "Content-Type": "Application/X-NDJSON; charset=utf-8"})

    assert response.status_code == 202, response.text
    assert [(r["index"], r["line"], r["status"]) for r in response.json()["results"]] == [
        (0, 1, "accepted"), (1, 3, "rejected"), (2, 4, "accepted")]
    assert response.json()["results"][1]["errors"][0]["field"] == "occurred_at"


# --- enrich --------------------------------------------------------------------------------------------

async def test_enrich_refuses_a_declared_language_that_is_not_a_tag_naming_the_field(client):
    invalid = await client.post("/ingest/v1/enrich", headers=READER,
                                json={"text": "my parcel never arrived and nobody answers", "language": "english!"})
    valid = await client.post("/ingest/v1/enrich", headers=READER,
                              json={"text": "my parcel never arrived and nobody answers", "language": "en-GB"})

    assert invalid.status_code == 422, invalid.text
    assert [e["field"] for e in invalid.json()["errors"]] == ["language"]
    assert valid.status_code == 200, valid.text
    assert valid.json()["enrichment"]["language"] == "en-GB"


async def test_enrich_names_the_field_of_an_invalid_body(client):
    missing = await client.post("/ingest/v1/enrich", headers=READER, json={"language": "en"})
    unknown = await client.post("/ingest/v1/enrich", headers=READER, json={"text": "hi", "lang": "en"})
    scalar = await client.post("/ingest/v1/enrich", headers={**READER, "Content-Type": "application/json"},
                               content=b"5")

    assert (missing.status_code, missing.json()["errors"][0]["field"]) == (422, "text")
    assert (unknown.status_code, unknown.json()["errors"][0]["field"]) == (422, "lang")
    assert (scalar.status_code, scalar.json()["errors"][0]["field"]) == (422, "body")


async def test_enrich_refuses_a_body_over_the_size_limit_with_a_413(ingest_settings):
    small = ingest_settings.model_copy(update={"ingest_max_payload_bytes": 4096})
    body = body_of({"text": "the anvil arrived dented " * 400})
    async with serving(small) as client:
        declared = await client.post("/ingest/v1/enrich", content=body,
                                     headers={**READER, "Content-Type": "application/json"})

        async def chunks():  # no Content-Length
            for start in range(0, len(body), 1000):
                yield body[start:start + 1000]
        streamed = await client.post("/ingest/v1/enrich", content=chunks(),
                                     headers={**READER, "Content-Type": "application/json"})

    assert declared.status_code == 413, declared.text
    assert streamed.status_code == 413, streamed.text


# --- the list's filters ------------------------------------------------------------------------------

async def test_list_filters_refuse_junk_naming_the_parameter(client):
    await client.post(INTERACTIONS, json=post_item(1), headers=WRITER)

    for params, field in (({"source": "X!"}, "source"), ({"author_key": "rita"}, "author_key")):
        response = await client.get(INTERACTIONS, params=params, headers=READER)
        assert response.status_code == 422, (params, response.text)
        assert response.json()["errors"][0]["field"] == field

    key = author_key_for("x", "5150")
    found = await client.get(INTERACTIONS, params={"source": "x", "author_key": key}, headers=READER)
    assert found.status_code == 200
    assert [i["interaction"]["external_id"] for i in found.json()["items"]] == [post_item(1)["external_id"]]


async def test_a_one_item_array_whose_item_is_invalid_names_the_field_from_the_root(client):
    response = await client.post(INTERACTIONS, json=[post_item(1, kind="tweet")], headers=WRITER)

    assert response.status_code == 422, response.text
    assert [(e["field"], e["index"]) for e in response.json()["errors"]] == [("[0].kind", 0)]
    assert stored(client) == []


@pytest.mark.parametrize("declared, kept", [("en-x-twain", "en-x-twain"), ("EN-gb", "en-GB"),
                                            ("ja-JP-u-ca-japanese", "ja-JP-u-ca-japanese")])
async def test_a_declared_tag_the_api_accepts_is_kept_when_the_text_cannot_tell(client, declared, kept):
    response = await client.post("/ingest/v1/enrich", headers=READER, json={"text": "zzq", "language": declared})

    assert response.status_code == 200, response.text
    assert response.json()["enrichment"]["language"] == kept
