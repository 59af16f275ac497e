"""The CloudEvents envelope survives both wire forms, and junk is refused as DecodeError."""

from __future__ import annotations

import types
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from functools import cache
from inspect import isclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import AwareDatetime, BaseModel
from pydantic.fields import FieldInfo

from socialzone_common.catalog import load_catalog, make_envelope, parse_payload
from socialzone_common.catalog_docs import json_schema
from socialzone_common.envelope import (
    DecodeError,
    Envelope,
    from_binary,
    from_structured,
    header,
    to_binary,
    to_structured,
)

# --- strategies ----------------------------------------------------------------------------

# Whole-minute offsets: ISO 8601 has no seconds in a UTC offset.
offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes)))
aware_datetimes = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1),
                               timezones=offsets | st.just(timezone.utc))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=12,
)
traceparents = st.from_regex(r"00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]", fullmatch=True)

envelopes = st.builds(
    Envelope,
    id=st.text(min_size=1),
    source=st.text(min_size=1),
    type=st.text(min_size=1),
    subject=st.none() | st.text(),  # unicode included: it rides in a header as UTF-8
    time=aware_datetimes,
    dataschema=st.none() | st.text(),
    partitionkey=st.text(min_size=1),
    traceparent=st.none() | traceparents,
    data=st.dictionaries(st.text(), json_values, max_size=6),
)


def _constraints(metadata: list[Any]) -> dict[str, Any]:
    """Field constraints (ge, max_length, pattern, ...) from pydantic/annotated-types metadata."""
    found: dict[str, Any] = {}
    for item in metadata:
        if isinstance(item, FieldInfo):
            found |= _constraints(item.metadata)
            continue
        for name in ("ge", "gt", "le", "lt", "min_length", "max_length", "pattern"):
            if getattr(item, name, None) is not None:
                found[name] = getattr(item, name)
    return found


def strategy_for(annotation: Any, metadata: list[Any] = ()) -> st.SearchStrategy[Any]:
    """A strategy of valid values for a payload field: hypothesis' from_type knows neither
    pydantic's Field constraints nor AwareDatetime, so the catalog's few shapes are spelt out."""
    origin, args = get_origin(annotation), get_args(annotation)
    limits = _constraints(list(metadata))
    if origin is Annotated:
        return strategy_for(args[0], [*metadata, *args[1:]])
    if origin in (Union, types.UnionType):
        return st.one_of(*(strategy_for(arg, metadata) for arg in args))
    if origin is Literal:
        return st.sampled_from(args)
    if origin is tuple:
        return st.lists(strategy_for(args[0]), min_size=limits.get("min_length", 0), max_size=3).map(tuple)
    if origin is dict:
        return st.dictionaries(strategy_for(args[0]), strategy_for(args[1]), max_size=3)
    if annotation is type(None):
        return st.none()
    if isclass(annotation) and issubclass(annotation, BaseModel):
        return model_strategy(annotation)
    if annotation in (AwareDatetime, datetime):
        return aware_datetimes
    if annotation is date:
        return st.dates()
    if annotation is bool:
        return st.booleans()
    if annotation is Decimal:  # Money: 18 digits, 4 places
        return st.decimals(min_value=-(10**13), max_value=10**13, places=4,
                           allow_nan=False, allow_infinity=False)
    if annotation is float:
        return st.floats(min_value=limits.get("ge"), max_value=limits.get("le"),
                         allow_nan=False, allow_infinity=False)
    if annotation is int:
        return st.integers(min_value=limits.get("ge", -(2**53)), max_value=limits.get("le", 2**53))
    if annotation is str:
        if "pattern" in limits:
            return st.from_regex(limits["pattern"], fullmatch=True)
        return st.text(min_size=limits.get("min_length", 0), max_size=min(limits.get("max_length", 40), 40))
    raise NotImplementedError(f"no strategy for {annotation!r}: extend strategy_for")


def model_strategy(model: type[BaseModel]) -> st.SearchStrategy[BaseModel]:
    """Every field drawn, optional ones included (st.builds alone would leave them at default)."""
    return st.builds(model, **{name: strategy_for(field.annotation, field.metadata)
                               for name, field in model.model_fields.items()})


def _event(**changes: Any) -> Envelope:
    values = dict(id="7b0c1f5e-2b1c-4c5e-9a55-3f1d2c3b4a59", source="/socialzone/care",
                  type="care.case.opened", subject="cus_42",
                  time=datetime(2025, 3, 1, 9, 30, tzinfo=timezone.utc), partitionkey="cus_42",
                  traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                  data={"case_id": "case_1", "customer_id": "cus_42", "intents": ["complaint"]})
    return Envelope(**(values | changes))


# --- round trips ----------------------------------------------------------------------------

def test_structured_event_round_trips_with_every_attribute():
    event = _event(dataschema="urn:socialzone:event:care.case.opened:v1")

    assert from_structured(to_structured(event)) == event
    assert from_structured(to_structured(event).decode()) == event  # text works as well as bytes


def test_structured_form_writes_utc_time_with_z_and_leaves_out_absent_attributes():
    event = _event(time=datetime(2025, 3, 1, 11, 30, tzinfo=timezone(timedelta(hours=2))),
                   subject=None, traceparent=None)

    body = orjson.loads(to_structured(event))

    assert body["time"] == "2025-03-01T09:30:00Z"
    assert "subject" not in body and "traceparent" not in body
    assert body["specversion"] == "1.0" and body["datacontenttype"] == "application/json"


def test_binary_record_carries_the_attributes_in_ce_headers_and_the_data_as_value():
    event = _event()

    key, headers, value = to_binary(event)

    assert key == b"cus_42"
    assert header(headers, "ce_type") == "care.case.opened"
    assert header(headers, "ce_time") == "2025-03-01T09:30:00Z"
    assert header(headers, "content-type") == "application/json"
    assert header(headers, "traceparent") == event.traceparent  # W3C name too, for tracing tools
    assert orjson.loads(value) == event.data
    assert from_binary(headers, value) == event


def test_binary_round_trip_keeps_a_unicode_subject():
    event = _event(subject="kundin-Zoë-東京", partitionkey="kundin-Zoë-東京")

    assert from_binary(*to_binary(event)[1:]) == event


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(envelopes)
def test_any_envelope_survives_structured_mode(event):
    decoded = from_structured(to_structured(event))

    assert decoded == event
    assert decoded.time.tzinfo == timezone.utc


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(envelopes)
def test_any_envelope_survives_kafka_binary_mode(event):
    key, headers, value = to_binary(event)

    assert key == event.partitionkey.encode()
    assert from_binary(headers, value) == event


def test_envelope_time_is_normalized_to_utc():
    event = _event(time=datetime(2025, 3, 1, 1, 30, tzinfo=timezone(timedelta(hours=-8))))

    assert event.time == datetime(2025, 3, 1, 9, 30, tzinfo=timezone.utc)
    assert event.time.utcoffset() == timedelta(0)


# --- junk is refused as DecodeError -----------------------------------------------------------

@pytest.mark.parametrize("raw", [
    b"", b"not json", b"[]", b"42", b'{"id": "x"}', b"\xff\xfe",
    # naive time
    b'{"id":"1","source":"s","type":"t","time":"2025-03-01T09:30:00","partitionkey":"k","data":{}}',
    # data is not an object
    b'{"id":"1","source":"s","type":"t","time":"2025-03-01T09:30:00Z","partitionkey":"k","data":[1]}',
    # wrong specversion
    b'{"id":"1","source":"s","specversion":"0.3","type":"t","time":"2025-03-01T09:30:00Z",'
    b'"partitionkey":"k","data":{}}',
])
def test_structured_junk_raises_decode_error(raw):
    with pytest.raises(DecodeError):
        from_structured(raw)


@given(st.binary())
def test_structured_decoding_of_random_bytes_fails_only_with_decode_error(raw):
    with pytest.raises(DecodeError):
        from_structured(raw)


def test_record_without_ce_id_is_not_a_cloudevent():
    with pytest.raises(DecodeError, match="ce_id"):
        from_binary([("content-type", b"application/json")], b"{}")


@pytest.mark.parametrize("value", [b"not json", b"[1, 2]", b'"text"', b"\xff"])
def test_binary_record_with_junk_value_raises_decode_error(value):
    _, headers, _ = to_binary(_event())

    with pytest.raises(DecodeError):
        from_binary(headers, value)


@pytest.mark.parametrize("name,value", [("ce_time", b"yesterday"), ("ce_partitionkey", b""),
                                        ("ce_specversion", b"0.3")])
def test_binary_record_with_bad_attribute_raises_decode_error(name, value):
    _, headers, body = to_binary(_event())
    headers = [(key, value if key == name else raw) for key, raw in headers]

    with pytest.raises(DecodeError):
        from_binary(headers, body)


@pytest.mark.parametrize("name", ["ce_id", "ce_subject", "ce_partitionkey"])
def test_binary_record_with_non_utf8_attribute_raises_decode_error(name):
    # CloudEvents' Kafka binding makes header values UTF-8. Guessing (errors="replace")
    # would turn two corrupt ids into one (the inbox then drops the second as a
    # duplicate) or key an event to a customer who does not exist: DLQ it instead.
    _, headers, body = to_binary(_event())
    headers = [(key, b"cus_\xff\xfe" if key == name else raw) for key, raw in headers]

    with pytest.raises(DecodeError):
        from_binary(headers, body)


# --- every catalog type survives the wire -------------------------------------------------------

@cache
def _published_schema(event_type: str) -> Draft202012Validator:
    return Draft202012Validator(json_schema(load_catalog()[event_type]))


@pytest.mark.parametrize("event_type", sorted(load_catalog()))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_catalog_payload_survives_the_wire_and_matches_its_published_schema(event_type, data):
    entry = load_catalog()[event_type]
    payload = data.draw(model_strategy(entry.model), label="payload")

    envelope = make_envelope(payload, source="/socialzone/test", subject=payload.envelope_subject(),
                             partitionkey=payload.envelope_key())
    _, headers, value = to_binary(envelope)
    decoded = parse_payload(from_binary(headers, value))

    assert decoded == payload
    assert type(decoded) is entry.model
    assert parse_payload(from_structured(to_structured(envelope))) == payload
    # What analysts read in docs/events accepts whatever the model accepts.
    _published_schema(event_type).validate(orjson.loads(to_structured(envelope)))


@given(subject=st.one_of(st.none(), st.text(min_size=1, max_size=20)),
       dataschema=st.one_of(st.none(), st.just("urn:socialzone:event:x:v1")),
       traceparent=st.one_of(st.none(), st.just("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")),
       data=st.dictionaries(st.text(max_size=8), st.one_of(st.integers(-2**63, 2**63 - 1), st.text(max_size=20),
                                                           st.none()),
                            max_size=5),
       as_bytes=st.booleans())
def test_structured_bytes_are_what_to_structured_writes(subject, dataschema, traceparent, data, as_bytes):
    from socialzone_common.envelope import structured_bytes

    time = datetime(2026, 3, 2, 11, 0, 0, 7, tzinfo=timezone.utc)
    envelope = Envelope(id="e-1", source="s", type="t.x.happened", subject=subject, time=time,
                        dataschema=dataschema, partitionkey="k", traceparent=traceparent, data=data)
    built = structured_bytes(id="e-1", source="s", type="t.x.happened", subject=subject, time=time,
                             dataschema=dataschema, partitionkey="k", traceparent=traceparent,
                             data=orjson.dumps(data) if as_bytes else data)
    assert built == to_structured(envelope)
