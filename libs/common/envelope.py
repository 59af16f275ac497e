"""The CloudEvents 1.0 envelope every socialzone event travels in.

Two wire forms:
- Kafka *binary* mode: attributes as ``ce_*`` headers, the JSON ``data`` as the value.
- *structured* JSON (the whole event as one JSON object) for the local bus and for files.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from socialzone_common.ids import uuid4_text

Headers = list[tuple[str, bytes]]

SPECVERSION = "1.0"
JSON = "application/json"
# Attributes carried as ce_* headers in Kafka binary mode (data goes in the value).
_BINARY_ATTRIBUTES = (
    "id", "source", "specversion", "type", "subject", "time",
    "dataschema", "partitionkey", "traceparent",
)


class DecodeError(ValueError):
    """The bytes on the wire are not a valid socialzone CloudEvent."""


class Envelope(BaseModel):
    """A CloudEvent with the ``partitionkey`` and ``traceparent`` extensions."""

    # extra="ignore": a CloudEvents extension this code does not know yet must not
    # send every event to the DLQ (consumers tolerate unknown extensions).
    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str = Field(min_length=1)
    source: str = Field(min_length=1)
    specversion: Literal["1.0"] = SPECVERSION
    type: str = Field(min_length=1)
    subject: str | None = None
    time: datetime
    datacontenttype: Literal["application/json"] = JSON
    dataschema: str | None = None
    partitionkey: str = Field(min_length=1)
    traceparent: str | None = None
    data: dict[str, Any]

    @field_validator("time")
    @classmethod
    def _aware_utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("time must carry a time zone")
        return value.astimezone(timezone.utc)

    def with_traceparent(self, traceparent: str | None) -> Envelope:
        return self.model_copy(update={"traceparent": traceparent})


def new_event_id() -> str:
    return uuid4_text()


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def _time_text(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


_OPTIONAL_TEXT = ("subject", "dataschema", "traceparent")
_ALL_ATTRIBUTES = tuple(Envelope.model_fields)
_KNOWN = frozenset(_ALL_ATTRIBUTES)
_FIELDS_SET = set(_ALL_ATTRIBUTES)
_ZERO = timedelta(0)


def _trusted(attributes: dict[str, Any]) -> Envelope | None:
    """The hot path of decoding: an Envelope without pydantic's validation pass, when
    every rule of the model visibly holds (else None, and the model validates and
    explains). Consumers decode every event, so this is most of the bus's CPU."""
    if not attributes.keys() <= _KNOWN or attributes.get("specversion") != SPECVERSION:
        return None
    if attributes.get("datacontenttype", JSON) != JSON or not isinstance(attributes.get("data"), dict):
        return None
    for name in ("id", "source", "type", "partitionkey"):
        value = attributes.get(name)
        if not isinstance(value, str) or not value:
            return None
    if any(not isinstance(attributes.get(name), (str, type(None))) for name in _OPTIONAL_TEXT):
        return None
    try:
        time = datetime.fromisoformat(attributes["time"])
    except (KeyError, TypeError, ValueError):
        return None
    if time.tzinfo is None:
        return None
    values = {name: attributes.get(name) for name in _ALL_ATTRIBUTES}
    values.update(time=time if time.utcoffset() == _ZERO else time.astimezone(timezone.utc),
                  datacontenttype=JSON, specversion=SPECVERSION)
    # What model_construct does, without its per-field default handling (4x faster):
    # every field is present and already checked above.
    envelope = Envelope.__new__(Envelope)
    object.__setattr__(envelope, "__dict__", values)
    object.__setattr__(envelope, "__pydantic_fields_set__", set(_FIELDS_SET))
    object.__setattr__(envelope, "__pydantic_extra__", None)
    object.__setattr__(envelope, "__pydantic_private__", None)
    return envelope


def _validated(attributes: dict[str, Any], what: str) -> Envelope:
    envelope = _trusted(attributes)
    if envelope is not None:
        return envelope
    try:
        return Envelope.model_validate(attributes)
    except ValueError as exc:
        raise DecodeError(f"invalid {what}: {exc}") from exc


# --- structured mode -------------------------------------------------------------------

def to_structured(event: Envelope) -> bytes:
    body = {name: getattr(event, name) for name in _ALL_ATTRIBUTES}
    for name in _OPTIONAL_TEXT:
        if body[name] is None:
            del body[name]
    return orjson.dumps(body, option=orjson.OPT_UTC_Z)


def structured_bytes(*, id: str, source: str, type: str, subject: str | None, time: datetime,
                     dataschema: str | None, partitionkey: str, traceparent: str | None,
                     data: dict[str, Any] | bytes) -> bytes:
    """Exactly what :func:`to_structured` writes for an envelope with these attributes, without
    building and validating one: for the hot paths that publish thousands of events they
    produced themselves. ``data`` is JSON-ready (as ``model_dump(mode="json")`` gives it) or
    JSON bytes already serialized, which are written as they are."""
    body: dict[str, Any] = {"id": id, "source": source, "specversion": SPECVERSION, "type": type}
    if subject is not None:
        body["subject"] = subject
    body["time"] = time
    body["datacontenttype"] = JSON
    if dataschema is not None:
        body["dataschema"] = dataschema
    body["partitionkey"] = partitionkey
    if traceparent is not None:
        body["traceparent"] = traceparent
    body["data"] = orjson.Fragment(data) if isinstance(data, (bytes, bytearray)) else data
    return orjson.dumps(body, option=orjson.OPT_UTC_Z)


def from_structured(raw: bytes | str) -> Envelope:
    try:
        attributes = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"not a structured CloudEvent: {exc}") from exc
    if not isinstance(attributes, dict):
        raise DecodeError("not a structured CloudEvent: not a JSON object")
    return _validated(attributes, "structured CloudEvent")


# --- Kafka binary mode ------------------------------------------------------------------

def to_binary(event: Envelope) -> tuple[bytes, Headers, bytes]:
    """Return ``(key, headers, value)`` for a Kafka record."""
    headers: Headers = [("content-type", JSON.encode())]
    for name in _BINARY_ATTRIBUTES:
        value = getattr(event, name)
        if value is None:
            continue
        text = _time_text(value) if name == "time" else str(value)
        headers.append((f"ce_{name}", text.encode()))
    if event.traceparent:
        # W3C trace context under its own name too, for tools that only know that one.
        headers.append(("traceparent", event.traceparent.encode()))
    return event.partitionkey.encode(), headers, orjson.dumps(event.data)


def from_binary(headers: Headers, value: bytes | None) -> Envelope:
    attributes: dict[str, Any] = {}
    for name, raw in headers or ():
        if name.startswith("ce_") and raw is not None:
            try:
                attributes[name[3:]] = raw.decode()
            except UnicodeDecodeError as exc:  # never "repair" an id or key into another one
                raise DecodeError(f"header {name} is not UTF-8") from exc
    if "id" not in attributes:
        raise DecodeError("record has no ce_id header: not a binary-mode CloudEvent")
    try:
        attributes["data"] = orjson.loads(value) if value else {}
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"invalid binary-mode CloudEvent: data is not JSON: {exc}") from exc
    return _validated(attributes, "binary-mode CloudEvent")


def header(headers: Headers, name: str) -> str | None:
    """The last value of a header, decoded, or None."""
    found = None
    for key, raw in headers or ():
        if key == name and raw is not None:
            found = raw.decode(errors="replace")
    return found
