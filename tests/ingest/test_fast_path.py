"""The fast write path (issue 4) changes how a batch is recorded, never what is recorded:

* a valid JSON array is validated in one call; a batch with an invalid item is still
  answered item by item, naming the same fields as before;
* the stored document and the event are written from validated values without building
  the contract models, and are byte for byte what the models write;
* the enrichment is carried as JSON, equal to ``Enrichment.model_dump_json()``;
* the sentiment model's one-pass inference equals the reference featurize + weights.
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import orjson
import pytest
from pydantic import TypeAdapter

from socialzone_common import outbox
from socialzone_common.envelope import from_structured, to_structured
from socialzone_common.events.common import (
    Author, AuthorAttributes, Enrichment, Identifier, Interaction, Transaction, TransactionItem,
)
from socialzone_common.events.ingest import InteractionRecorded
from socialzone_ingest import domain
from socialzone_ingest.enrich import enrich_many, enrich_many_json
from socialzone_ingest.enrichment import BrandEntry, BrandList, Enricher
from socialzone_ingest.enrichment.evaluation import labelled_posts
from socialzone_ingest.enrichment.sentiment import featurize
from socialzone_ingest.models import InteractionIn

from bench.ingest import items as bench_items
from tests.ingest.conftest import WRITER, outbox_events, stored
from tests.ingest.test_interactions_api import post_item

BRANDS = BrandList(entries=[
    BrandEntry(name="Acme", kind="brand", aliases=["acme corp"], handles=["@acme"], products=["RoadRunner 3000"]),
    BrandEntry(name="Globex", kind="competitor", handles=["@globex"]),
])


@pytest.fixture(scope="module")
def enricher() -> Enricher:
    return Enricher(brands=BRANDS)


# --- the batch validation ------------------------------------------------------------------------

async def test_a_valid_batch_is_recorded_in_order_with_a_result_per_item(client):
    batch = [post_item(n) for n in range(1, 8)]
    response = await client.post("/ingest/v1/interactions", json=batch, headers=WRITER)

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["accepted"] == 7 and body["rejected"] == 0
    assert [r["index"] for r in body["results"]] == list(range(7))
    assert [r["interaction_id"] for r in body["results"]] == [
        domain.interaction_id_for("x", item["external_id"]) for item in batch]
    assert len(stored(client)) == 7
    assert len(outbox_events(client, "ingest.interaction.recorded")) == 7


async def test_one_bad_item_in_a_batch_is_rejected_naming_its_fields_and_the_others_are_recorded(client):
    batch = [post_item(1), post_item(2, occurred_at="yesterday"), post_item(3, extrenal_id="typo"),
             post_item(4, author={"identifiers": [{"type": "x", "value": ""}]}), post_item(5)]
    response = await client.post("/ingest/v1/interactions", json=batch, headers=WRITER)

    assert response.status_code == 202, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["accepted", "rejected", "rejected", "rejected", "accepted"]
    assert [e["field"] for e in results[1]["errors"]] == ["occurred_at"]
    assert [e["field"] for e in results[2]["errors"]] == ["extrenal_id"]
    assert [e["field"] for e in results[3]["errors"]] == ["author.identifiers[0].value"]
    assert len(stored(client)) == 2  # none half-written


@pytest.mark.parametrize("item", [
    post_item(1, external_id=1790000000000000001, conversation_id=17, in_reply_to=18),   # numeric ids
    post_item(2, occurred_at="2026-11-20T09:30:00.123456+05:30", language="pt-BR"),
    post_item(3, text="  padded  ", url=None, metrics={}),
    post_item(4, author={"identifiers": [{"type": "email", "value": "A@Example.org", "verified": True}],
                         "attributes": {"country": "fr", "birth_date": "1990-02-03"}, "authenticated": True}),
    post_item(5, kind="transaction", transaction={"type": "order", "amount": 19.9, "currency": "eur",
                                                  "items": [{"name": "anvil", "quantity": 2, "unit_price": "9.95"}]}),
    post_item(6, transaction={"type": "refund", "amount": "1E+3", "currency": "USD"}),
])
def test_validating_the_raw_array_gives_the_same_items_as_validating_each_parsed_item(item):
    body = orjson.dumps([item])
    assert TypeAdapter(list[InteractionIn]).validate_json(body) == [InteractionIn.model_validate(orjson.loads(body)[0])]


# --- documents and events without the models -------------------------------------------------------

def _reference_document(candidate: domain.Candidate, prepared: domain._Prepared, enrichment: Enrichment,
                        recorded_at: datetime) -> Interaction:
    """The document as the models built it before the fast path."""
    item = candidate.item
    text, truncated = item.text, False
    if text is not None and len(text) > domain.MAX_TEXT:
        text, truncated = text[:domain.MAX_TEXT], True
    transaction = None if item.transaction is None else Transaction(
        type=item.transaction.type, amount=item.transaction.amount, currency=item.transaction.currency,
        items=tuple(TransactionItem(sku=i.sku, name=i.name, quantity=i.quantity, unit_price=i.unit_price)
                    for i in item.transaction.items))
    author = Author(
        identifiers=tuple(Identifier(type=t, value=v, verified=verified) for t, v, verified in prepared.identifiers),
        display_name=item.author.display_name, followers=item.author.followers,
        attributes=None if item.author.attributes is None else AuthorAttributes(**item.author.attributes.model_dump()),
        authenticated=item.author.authenticated)
    return Interaction(
        interaction_id=prepared.interaction_id, source=item.source, kind=item.kind, external_id=prepared.external_id,
        url=item.url, occurred_at=item.occurred_at, recorded_at=recorded_at, author=author, text=text,
        truncated=truncated, language=item.language, conversation_id=item.conversation_id,
        in_reply_to=item.in_reply_to, metrics=dict(item.metrics), transaction=transaction, enrichment=enrichment)


VARIED = [
    post_item(1),
    post_item(2, occurred_at="2026-11-20T09:30:00.120+02:00", language="en-GB", text="héllo 😡 " * 3),
    post_item(3, external_id=None, text="x" * 12_000),
    post_item(4, author={"identifiers": [{"type": "email", "value": "Rita@Example.ORG", "verified": True},
                                         {"type": "phone", "value": "+33 6 12 34 56 78"},
                                         {"type": "email", "value": "rita@example.org", "verified": True}],
                         "display_name": "Rita", "followers": 0, "authenticated": True,
                         "attributes": {"given_name": "Rita", "country": "fr", "birth_date": "1990-02-03"}}),
    post_item(5, kind="transaction", text=None, transaction={
        "type": "order", "amount": "1E+3", "currency": "eur",
        "items": [{"sku": "A-1", "name": "anvil", "quantity": 2, "unit_price": "9.9500"}]}),
]


@pytest.mark.parametrize("raw", VARIED)
def test_the_document_is_byte_for_byte_what_the_contract_model_writes(raw, enricher):
    candidate = domain.Candidate(item=InteractionIn.model_validate(raw), index=0)
    prepared = domain._prepare(candidate, default_region=None)
    assert isinstance(prepared, domain._Prepared)
    enrichment = enricher.enrich(candidate.item.text, declared_language=candidate.item.language)
    recorded_at = datetime(2026, 11, 21, 8, 0, 0, 123456, tzinfo=timezone.utc)

    document = domain._document(prepared, enrichment=enricher.enrich_json(candidate.item.text, candidate.item.language),
                                recorded_at=recorded_at)

    reference = _reference_document(candidate, prepared, enrichment, recorded_at)
    assert document == reference.model_dump_json().encode()
    assert Interaction.model_validate_json(document) == reference
    assert prepared.author_key == reference.author.key


def test_the_event_is_the_envelope_the_models_would_write(enricher):
    candidate = domain.Candidate(item=InteractionIn.model_validate(VARIED[3]), index=0)
    prepared = domain._prepare(candidate, default_region=None)
    recorded_at = datetime(2026, 11, 21, 9, 0, tzinfo=timezone(timedelta(hours=1)))
    enrichment = enricher.enrich(candidate.item.text)
    document = domain._document(prepared, enrichment=enricher.enrich_json(candidate.item.text), recorded_at=recorded_at)
    event_id = str(uuid.uuid4())

    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    # what domain.record enqueues: the document's bytes as the event's data
    fast = outbox.structured_row(InteractionRecorded.event_type, source=domain.EVENT_SOURCE,
                                 subject=prepared.author_key, data=b'{"interaction":' + document + b"}",
                                 time=recorded_at.astimezone(timezone.utc), event_id=event_id, traceparent=traceparent)
    reference = InteractionRecorded(interaction=_reference_document(candidate, prepared, enrichment, recorded_at)) \
        .to_envelope(source=domain.EVENT_SOURCE, event_id=event_id, time=recorded_at, traceparent=traceparent)

    assert fast == (event_id, reference.type, "zone.interactions.raw", reference.partitionkey, to_structured(reference))
    assert from_structured(fast[4]) == reference


def test_ids_are_the_uuids_they_always_were():
    for source, external_id in [("x", "1"), ("reddit", "t3_abc"), ("rss", "https://blog.example/p/é?a=1")]:
        assert domain.interaction_id_for(source, external_id) == str(
            uuid.uuid5(domain._ID_NAMESPACE, f"{source}\0{external_id}"))


# --- enrichment as JSON ----------------------------------------------------------------------------

def _texts() -> list[tuple[str | None, str | None]]:
    posts = [(p["text"], None) for p in labelled_posts() + labelled_posts(held_out=True)]
    generated = [(i["text"], None) for i in bench_items(0, 300, random.Random(11))]
    return posts + generated + [(None, "en"), ("   ", "EN_us"), ("Bonjour, où est ma commande ?", "fr"),
                                ("🙏🙏", None), ("ok", "en-GB"), ("a" * 12_000, None)]


def test_enrichment_as_json_is_what_the_enrichment_model_writes(enricher):
    texts = _texts()
    models = enrich_many(enricher, texts)
    assert enrich_many_json(enricher, texts) == [m.model_dump_json().encode() for m in models]


def test_an_enricher_without_a_json_path_is_serialized_through_its_models():
    class Plain:
        def enrich(self, text, *, declared_language=None):
            return Enrichment(language=declared_language, keywords=(text or "",))

    assert enrich_many_json(Plain(), [("a", "en"), (None, None)]) == [
        b'{"language":"en","sentiment":null,"intents":[],"hashtags":[],"mentions":[],"urls":[],"keywords":["a"],'
        b'"brands":[]}',
        b'{"language":null,"sentiment":null,"intents":[],"hashtags":[],"mentions":[],"urls":[],"keywords":[""],'
        b'"brands":[]}']


def test_one_pass_sentiment_inference_equals_features_then_weights(enricher):
    model = enricher.sentiment_model
    for text, _ in _texts():
        if text:
            assert model.predict(text) == model.predict_features(*featurize(text)), text


def test_misspelled_brands_are_found_the_same_with_the_word_cache():
    enricher = Enricher(brands=BrandList(entries=[BrandEntry(name="Globex", kind="competitor"),
                                                  BrandEntry(name="RoadRunner", products=["Anvilmaster"])]))
    for _ in range(2):  # the second time from the cache
        found = enricher.enrich("the globx anvilmastr is better than the globe").brands
        assert [(b.name, b.matched) for b in found] == [("Globex", "globx"), ("RoadRunner", "anvilmastr")]


def test_dates_and_decimals_keep_their_wire_form():
    raw = VARIED[4]
    candidate = domain.Candidate(item=InteractionIn.model_validate(raw), index=0)
    prepared = domain._prepare(candidate, default_region=None)
    document = orjson.loads(domain._document(prepared, enrichment=b"{}", recorded_at=datetime.now(timezone.utc)))
    assert document["transaction"]["amount"] == format(Decimal("1E+3"), "f") == "1000"
    assert document["transaction"]["items"][0]["unit_price"] == "9.9500"
