"""The event catalog: complete, immutable, documented, and never broken for its readers."""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from inspect import isclass
from typing import Any, Literal, get_args

import orjson
import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ValidationError
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from socialzone_common.catalog import CATALOG, TOPICS, CatalogEntry, load_catalog, make_envelope
from socialzone_common.catalog_docs import (
    asyncapi_document,
    check_backward_compatible,
    json_schema,
    schema_filename,
    write_catalog,
)
from socialzone_common.envelope import Envelope, to_binary, to_structured
from socialzone_common.events import care, identity, ingest, insights, marketing, privacy, sales
from socialzone_common.events.common import (
    Author,
    AuthorAttributes,
    BrandMention,
    Enrichment,
    Identifier,
    Interaction,
    Sentiment,
    TimeWindow,
    Transaction,
    TransactionItem,
    ValueObject,
)

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "events"
SNAPSHOTS = Path(__file__).resolve().parent / "catalog_snapshots"
REGENERATE = "run: python -m socialzone_common.catalog_docs --snapshots tests/catalog_snapshots"

# The topic table of /work/shared/design/ARCHITECTURE.md ("Events"), spelt out.
ARCHITECTURE_TOPICS = {
    "zone.interactions.raw": {"ingest.interaction.recorded", "ingest.interaction.retracted"},
    "zone.interactions": {"identity.interaction.attributed", "identity.interaction.retracted"},
    "zone.customers": {"identity.customer.created", "identity.customer.merged", "identity.customer.unmerged",
                       "identity.identifier.linked", "identity.consent.changed"},
    "zone.privacy": {"identity.customer.erasure_requested", "ingest.erasure.completed",
                     "care.erasure.completed", "marketing.erasure.completed", "sales.erasure.completed",
                     "insights.erasure.completed"},
    "zone.care": {"care.case.opened", "care.case.assigned", "care.case.responded", "care.case.resolved",
                  "care.case.reopened", "care.sla.breached", "care.csat.recorded"},
    "zone.marketing": {"marketing.advocate.tier_changed", "marketing.advocate.flagged",
                       "marketing.reward.granted", "marketing.campaign.launched",
                       "marketing.campaign.paused", "marketing.campaign.resumed"},
    "zone.sales": {"sales.lead.created", "sales.lead.stage_changed", "sales.deal.won", "sales.deal.lost"},
    "zone.insights": {"insights.alert.raised", "insights.alert.resolved"},
}
SERVICES = ("ingest", "identity", "care", "marketing", "sales", "insights")
IRREGULAR_PAST = {"won", "lost", "sent", "paid", "held", "made", "built", "read"}

ENTRIES = sorted(load_catalog().values(), key=lambda e: e.type)


def by_type(test):
    return pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.type)(test)


# --- what is in the catalog ---------------------------------------------------------------------

def test_catalog_has_exactly_the_architecture_topics_and_event_types():
    in_catalog = {name: {e.type for e in ENTRIES if e.topic.name == name} for name in TOPICS}

    assert set(TOPICS) == set(ARCHITECTURE_TOPICS)
    assert in_catalog == ARCHITECTURE_TOPICS


@by_type
def test_type_is_a_past_tense_fact_named_service_thing_verb(entry: CatalogEntry):
    service, thing, verb = entry.type.split(".")

    assert service in SERVICES
    assert re.fullmatch(r"[a-z]+(_[a-z]+)*", thing) and re.fullmatch(r"[a-z]+(_[a-z]+)*", verb)
    last_word = verb.rsplit("_", 1)[-1]
    assert last_word.endswith("ed") or last_word in IRREGULAR_PAST, f"{entry.type}: not past tense"


@by_type
def test_type_is_declared_by_its_department_module(entry: CatalogEntry):
    service = entry.type.split(".")[0]
    expected = "privacy" if entry.topic.name == "zone.privacy" else service

    assert entry.model.__module__ == f"socialzone_common.events.{expected}"
    assert entry.version == 1


@by_type
def test_type_has_a_one_line_summary_of_its_own(entry: CatalogEntry):
    doc = entry.model.__dict__.get("__doc__") or ""

    assert doc.strip(), f"{entry.type} has no docstring"
    assert entry.summary == doc.strip().splitlines()[0] and entry.summary.endswith(".")


def _models_in(annotation: Any) -> set[type[BaseModel]]:
    """The payload model and every model nested in it, through tuples, unions and Optional."""
    if isclass(annotation) and issubclass(annotation, BaseModel):
        found = {annotation}
        for field in annotation.model_fields.values():
            found |= _models_in(field.annotation)
        return found
    return set().union(*(_models_in(arg) for arg in get_args(annotation)))


@by_type
def test_payload_and_every_nested_object_is_frozen(entry: CatalogEntry):
    for model in _models_in(entry.model):
        assert model.model_config.get("frozen") is True, f"{model.__name__} is not frozen"
    example = EXAMPLES[entry.type]
    with pytest.raises(ValidationError):
        setattr(example, next(iter(entry.model.model_fields)), "changed")


def test_model_names_are_unique_so_asyncapi_components_are_unambiguous():
    models = set().union(*(_models_in(e.model) for e in ENTRIES))

    assert len({m.__name__ for m in models}) == len(models)


@by_type
def test_customer_events_are_keyed_by_the_customer(entry: CatalogEntry):
    # ARCHITECTURE: subject is the customer id once known, so one customer's events stay in order.
    if "customer_id" in entry.model.model_fields:
        assert entry.model.subject_field == "customer_id"
        assert entry.model.key_field is None


def test_events_without_a_customer_name_their_subject_and_key():
    assert (ingest.InteractionRecorded.subject_field, ingest.InteractionRetracted.subject_field) == (
        "interaction.author.key", "author_key")
    assert identity.CustomerMerged.subject_field == "survivor_id"
    assert marketing.CampaignPaused.subject_field == "campaign_id"
    assert (insights.AlertRaised.subject_field, insights.AlertRaised.key_field) == ("alert_id", "topic")


def test_raw_interaction_is_keyed_by_a_hash_not_by_the_email_address():
    event = EXAMPLES["ingest.interaction.recorded"]
    envelope = event.to_envelope(source="/socialzone/ingest")

    assert envelope.subject == envelope.partitionkey == event.interaction.author.key
    assert "@" not in envelope.partitionkey and envelope.partitionkey.startswith("author:")


@by_type
def test_every_model_renders_a_valid_json_schema(entry: CatalogEntry):
    schema = json_schema(entry)

    Draft202012Validator.check_schema(schema)
    assert schema["$id"] == entry.dataschema
    assert schema["properties"]["type"] == {"const": entry.type}
    assert schema["properties"]["data"]["title"] == entry.model.__name__


def test_envelope_schema_describes_every_envelope_attribute():
    assert set(json_schema(ENTRIES[0])["properties"]) == set(Envelope.model_fields)


# --- compatibility with what was published --------------------------------------------------------

@by_type
def test_every_type_has_a_compatibility_snapshot(entry: CatalogEntry):
    assert (SNAPSHOTS / schema_filename(entry)).exists(), f"new type {entry.type} has no snapshot: {REGENERATE}"


def test_every_snapshot_still_has_its_type_in_the_catalog():
    snapshotted = {path.name.rsplit(".v", 1)[0] for path in SNAPSHOTS.glob("*.json")}

    assert snapshotted - set(CATALOG) == set(), "a published event type was removed"


@by_type
def test_current_schema_is_backward_compatible_with_its_snapshot(entry: CatalogEntry):
    snapshot = SNAPSHOTS / schema_filename(entry)
    if not snapshot.exists():
        pytest.skip("no snapshot yet (test_every_type_has_a_compatibility_snapshot fails)")

    problems = check_backward_compatible(json.loads(snapshot.read_text()), json_schema(entry))

    assert problems == [], f"{entry.type} breaks its readers; publish a new version instead"


class _Tag(ValueObject):
    label: str


class _RenamedTag(ValueObject):
    label: str


class _Before(ValueObject):
    case_id: str
    priority: Literal["low", "normal", "high"]
    queue: str | None = None
    tags: tuple[_Tag, ...] = ()


def _schema(model: type[BaseModel]) -> dict:
    return model.model_json_schema(mode="serialization")


def _problems(after: type[BaseModel]) -> list[str]:
    return check_backward_compatible(_schema(_Before), _schema(after))


def test_compatibility_accepts_the_same_schema_and_a_new_optional_field():
    class After(ValueObject):
        case_id: str
        priority: Literal["low", "normal", "high"]
        queue: str | None = None
        tags: tuple[_Tag, ...] = ()
        channel: str | None = None

    assert _problems(_Before) == []
    assert _problems(After) == []


def test_compatibility_accepts_a_new_enum_value_and_a_renamed_nested_model():
    class After(ValueObject):
        case_id: str
        priority: Literal["low", "normal", "high", "urgent"]
        queue: str | None = None
        tags: tuple[_RenamedTag, ...] = ()

    assert _problems(After) == []


def test_compatibility_catches_a_removed_property():
    class After(ValueObject):
        case_id: str
        priority: Literal["low", "normal", "high"]
        tags: tuple[_Tag, ...] = ()

    assert _problems(After) == ["queue: property removed"]


def test_compatibility_catches_a_retyped_property():
    class After(ValueObject):
        case_id: int
        priority: Literal["low", "normal", "high"]
        queue: str | None = None
        tags: tuple[_Tag, ...] = ()

    assert _problems(After) == ["case_id: type changed from string to integer"]


def test_compatibility_catches_a_retyped_property_inside_a_nested_definition():
    class Tag(ValueObject):
        label: int

    class After(ValueObject):
        case_id: str
        priority: Literal["low", "normal", "high"]
        queue: str | None = None
        tags: tuple[Tag, ...] = ()

    assert _problems(After) == ["tags[].label: type changed from string to integer"]


def test_compatibility_catches_a_shrunk_enum_and_an_optional_field_losing_null():
    class After(ValueObject):
        case_id: str
        priority: Literal["low", "high"]
        queue: str = "default"
        tags: tuple[_Tag, ...] = ()

    problems = _problems(After)

    assert sorted(problems) == ['priority: type changed: "normal" no longer allowed',
                                "queue: type changed from null|string to string"]


def test_compatibility_catches_a_newly_required_property():
    class After(ValueObject):
        case_id: str
        priority: Literal["low", "normal", "high"]
        queue: str | None = None
        tags: tuple[_Tag, ...] = ()
        channel: str

    assert _problems(After) == ["channel: newly required"]


def test_compatibility_catches_an_optional_property_becoming_required_and_vice_versa():
    class After(ValueObject):
        case_id: str = ""
        priority: Literal["low", "normal", "high"]
        queue: str | None
        tags: tuple[_Tag, ...] = ()

    assert sorted(_problems(After)) == ["case_id: no longer required (readers of the old schema rely on it)",
                                        "queue: newly required"]


def test_compatibility_catches_a_field_removed_deep_inside_a_published_event():
    published = json_schema(CATALOG["ingest.interaction.recorded"])
    changed = json.loads(json.dumps(published))
    del changed["$defs"]["Author"]["properties"]["display_name"]

    assert check_backward_compatible(published, changed) == [
        "data.interaction.author.display_name: property removed"]


# --- the rendered docs ------------------------------------------------------------------------------

def test_docs_events_are_up_to_date(tmp_path: Path):
    written = write_catalog(tmp_path)
    rendered = {path.relative_to(tmp_path): path.read_text() for path in written}
    committed = {path.relative_to(DOCS): path.read_text() for path in DOCS.rglob("*.json")}

    assert sorted(committed) == sorted(rendered), "docs/events lists other files: " + REGENERATE
    stale = [str(name) for name in rendered if committed[name] != rendered[name]]
    assert stale == [], "docs/events is stale: " + REGENERATE


def test_rendering_is_deterministic(tmp_path: Path):
    first = [p.read_bytes() for p in write_catalog(tmp_path / "a")]
    second = [p.read_bytes() for p in write_catalog(tmp_path / "b")]

    assert first == second and all(text.endswith(b"}\n") for text in first)


def test_asyncapi_document_has_a_channel_per_topic_and_a_message_per_type():
    document = asyncapi_document()

    assert document["asyncapi"] == "3.0.0"
    assert document["servers"]["kafka"]["protocol"] == "kafka"
    assert set(document["channels"]) == set(TOPICS)
    for name, channel in document["channels"].items():
        assert channel["address"] == name
        assert channel["bindings"]["kafka"]["partitions"] == TOPICS[name].partitions
        assert set(channel["messages"]) == ARCHITECTURE_TOPICS[name]
        assert document["operations"][f"receive.{name}"]["action"] == "receive"
    messages = document["components"]["messages"]
    assert set(messages) == set(CATALOG)
    assert {m["contentType"] for m in messages.values()} == {"application/json"}


ASYNCAPI_URI = "urn:socialzone:asyncapi"


@pytest.fixture(scope="module")
def asyncapi_registry() -> Registry:
    return Registry().with_resource(ASYNCAPI_URI, DRAFT202012.create_resource(asyncapi_document()))


def _validator(pointer: str, registry: Registry) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"{ASYNCAPI_URI}#{pointer}"}, registry=registry,
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


@by_type
def test_published_schemas_accept_a_real_example_event(entry: CatalogEntry, asyncapi_registry: Registry):
    payload = EXAMPLES[entry.type]
    envelope = make_envelope(payload, source=f"/socialzone/{entry.type.split('.')[0]}",
                             subject=payload.envelope_subject(), partitionkey=payload.envelope_key(),
                             traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    structured = orjson.loads(to_structured(envelope))
    _, headers, _ = to_binary(envelope)
    message = f"/components/messages/{entry.type}"

    Draft202012Validator(json_schema(entry), format_checker=Draft202012Validator.FORMAT_CHECKER).validate(
        structured)
    _validator(f"{message}/payload", asyncapi_registry).validate(structured["data"])
    _validator(f"{message}/headers", asyncapi_registry).validate({k: v.decode() for k, v in headers})


def test_published_schema_rejects_an_event_missing_a_required_field(asyncapi_registry: Registry):
    data = orjson.loads(to_structured(EXAMPLES["care.csat.recorded"].to_envelope(source="/socialzone/care")))
    del data["data"]["score"]

    assert not Draft202012Validator(json_schema(CATALOG["care.csat.recorded"])).is_valid(data)


def test_examples_cover_every_type():
    assert set(EXAMPLES) == set(CATALOG)
    for event_type, example in EXAMPLES.items():
        assert example.event_type == event_type


# --- one real example of each event type ---------------------------------------------------------------

T0 = datetime(2025, 3, 1, 9, 30, tzinfo=timezone.utc)
CUSTOMER = "cus_01JNB8Q2X7"
CASE = "case_01JNB8R5K1"

INTERACTION = Interaction(
    interaction_id="int_01JNB8PZ3M",
    source="x",
    kind="mention",
    external_id="1895012345678901234",
    url="https://x.com/zoe_k/status/1895012345678901234",
    occurred_at=T0 - timedelta(minutes=3),
    recorded_at=T0,
    author=Author(
        identifiers=(Identifier(type="x", value="44196397"), Identifier(type="email", value="zoe@example.org")),
        display_name="Zoë K.",
        followers=1830,
        attributes=AuthorAttributes(given_name="Zoë", city="Lyon", country="FR", verified=False,
                                    birth_date=date(1990, 5, 17)),
    ),
    text="@acme my order #4411 arrived broken, second time this month. Thinking of switching to @globex",
    language="en",
    conversation_id="1895012345678901234",
    metrics={"likes": 12, "replies": 3, "shares": 2},
    transaction=Transaction(type="order", amount=Decimal("129.90"), currency="EUR",
                            items=(TransactionItem(sku="KX-200", name="Kettle", unit_price=Decimal("129.90")),)),
    enrichment=Enrichment(
        language="en",
        sentiment=Sentiment(label="negative", score=-0.82),
        intents=("complaint", "churn_risk"),
        mentions=("@acme", "@globex"),
        keywords=("order", "broken"),
        brands=(BrandMention(name="Acme", kind="brand", matched="@acme"),
                BrandMention(name="Globex", kind="competitor", matched="@globex")),
    ),
)

EXAMPLES = {e.event_type: e for e in [
    ingest.InteractionRecorded(interaction=INTERACTION),
    ingest.InteractionRetracted(interaction_id=INTERACTION.interaction_id, author_key=INTERACTION.author.key,
                                source="x", external_id=INTERACTION.external_id,
                                retracted_at=T0 + timedelta(hours=2), reason="deleted"),
    identity.InteractionAttributed(customer_id=CUSTOMER, interaction=INTERACTION,
                                   matched_by=Identifier(type="x", value="44196397")),
    identity.AttributedInteractionRetracted(interaction_id=INTERACTION.interaction_id, customer_id=CUSTOMER,
                                            retracted_at=T0 + timedelta(hours=2)),
    identity.CustomerCreated(customer_id=CUSTOMER, created_from="interaction",
                             interaction_id=INTERACTION.interaction_id, display_name="Zoë K."),
    identity.CustomerMerged(survivor_id=CUSTOMER, merged_id="cus_01JNB8ZZ01", rule="strong_identifier",
                            evidence=(identity.MergeEvidence(identifier_type="email", event_id="evt_9"),)),
    identity.CustomerUnmerged(customer_id=CUSTOMER, restored_customer_id="cus_01JNB8ZZ01",
                              identifiers_moved=(Identifier(type="email", value="z.k@example.net"),),
                              reason="agent found two different people"),
    identity.IdentifierLinked(customer_id=CUSTOMER, identifier=Identifier(type="email", value="zoe@example.org"),
                              strength="strong", rule="crm_email", evidence_event_id="evt_7"),
    identity.ConsentChanged(customer_id=CUSTOMER, purpose="marketing_email", granted=False,
                            source="email_unsubscribe", changed_at=T0),
    privacy.ErasureRequested(erasure_id="era_1", customer_id=CUSTOMER, requested_at=T0,
                             merged_ids=("cus_01JNB8ZZ01",)),
    privacy.IngestErasureCompleted(erasure_id="era_1", customer_id=CUSTOMER, completed_at=T0, records_purged=14),
    privacy.CareErasureCompleted(erasure_id="era_1", customer_id=CUSTOMER, completed_at=T0, records_purged=3),
    privacy.MarketingErasureCompleted(erasure_id="era_1", customer_id=CUSTOMER, completed_at=T0,
                                      records_purged=0),
    privacy.SalesErasureCompleted(erasure_id="era_1", customer_id=CUSTOMER, completed_at=T0, records_purged=2),
    privacy.InsightsErasureCompleted(erasure_id="era_1", customer_id=CUSTOMER, completed_at=T0,
                                     records_purged=14),
    care.CaseOpened(case_id=CASE, customer_id=CUSTOMER, opened_from="interaction",
                    interaction_id=INTERACTION.interaction_id, channel="x", topic="delivery",
                    intents=("complaint", "churn_risk"), priority="high", queue="social-en",
                    sla_policy="standard", first_response_due=T0 + timedelta(hours=1),
                    resolution_due=T0 + timedelta(days=1)),
    care.CaseAssigned(case_id=CASE, customer_id=CUSTOMER, queue="social-en", assignee_id="agent_17",
                      assignee_kind="agent", rule="churn_risk_to_senior"),
    care.CaseResponded(case_id=CASE, customer_id=CUSTOMER, response_id="resp_1", responder_id="agent_17",
                       responder_kind="agent", channel="x", public=False, first_response=True,
                       seconds_since_opened=1260),
    care.CaseResolved(case_id=CASE, customer_id=CUSTOMER, resolution="refunded", resolver_id="agent_17",
                      responses=3, seconds_to_resolve=14_400),
    care.CaseReopened(case_id=CASE, customer_id=CUSTOMER, reopened_by="customer",
                      interaction_id="int_01JNC0AA11", reason="refund not received"),
    care.SlaBreached(case_id=CASE, customer_id=CUSTOMER, metric="first_response", sla_policy="standard",
                     target_seconds=3600, due_at=T0 + timedelta(hours=1), priority="high", queue="social-en"),
    care.CsatRecorded(case_id=CASE, customer_id=CUSTOMER, score=4, channel="email", assignee_id="agent_17"),
    marketing.TierChanged(customer_id=CUSTOMER, previous_tier="bronze", tier="silver", score=412.5,
                          reason="case_resolved"),
    marketing.AdvocateFlagged(customer_id=CUSTOMER, reason="burst_activity",
                              signals=(marketing.Signal(name="posts_per_hour", value=48, threshold=20),)),
    marketing.RewardGranted(reward_id="rwd_1", customer_id=CUSTOMER, points=50,
                            reason="case_resolved_by_advocate", source_event_id="evt_42", balance=1250),
    marketing.CampaignLaunched(campaign_id="cmp_spring", name="Spring kettles", channels=("x", "instagram"),
                               segment_id="seg_home", ends_at=T0 + timedelta(days=30)),
    marketing.CampaignPaused(campaign_id="cmp_spring", name="Spring kettles", paused_by="alert",
                             reason="crisis on brand:acme", alert_id="alr_7"),
    marketing.CampaignResumed(campaign_id="cmp_spring", name="Spring kettles", resumed_by="alert",
                              alert_id="alr_7"),
    sales.LeadCreated(lead_id="lead_1", customer_id=CUSTOMER, source="referral",
                      referrer_customer_id="cus_01JNB8ADV0", score=72),
    sales.LeadStageChanged(lead_id="lead_1", customer_id=CUSTOMER, from_stage="new", to_stage="qualified",
                           score=80),
    sales.DealWon(deal_id="deal_1", lead_id="lead_1", customer_id=CUSTOMER, amount=Decimal("2400.00"),
                  currency="EUR", referrer_customer_id="cus_01JNB8ADV0"),
    sales.DealLost(deal_id="deal_2", lead_id="lead_2", customer_id=CUSTOMER, amount=Decimal("990"),
                   currency="EUR", reason="competitor", competitor="Globex"),
    insights.AlertRaised(alert_id="alr_7", kind="crisis", topic="brand:acme", severity="critical",
                         metric="negative_mentions", observed=412, expected=35.5,
                         window=TimeWindow(start=T0 - timedelta(hours=1), end=T0),
                         sample_interaction_ids=(INTERACTION.interaction_id,)),
    insights.AlertResolved(alert_id="alr_7", kind="crisis", topic="brand:acme", resolved_by="recovered",
                           raised_at=T0),
]}
