"""The CloudEvents 1.0 envelope every socialzone event travels in.

Two wire forms:
- Kafka *binary* mode: attributes as ``ce_*`` headers, the JSON ``data`` as the value.
- *structured* JSON (the whole event as one JSON object) for the local bus and for files.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

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

    model_config = ConfigDict(frozen=True, extra="forbid")

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
    return str(uuid.uuid4())


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def _time_text(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


# --- structured mode -------------------------------------------------------------------

def to_structured(event: Envelope) -> bytes:
    body = event.model_dump(exclude_none=True)
    body["time"] = _time_text(event.time)
    return orjson.dumps(body)


def from_structured(raw: bytes | str) -> Envelope:
    try:
        return Envelope.model_validate(orjson.loads(raw))
    except (orjson.JSONDecodeError, ValueError) as exc:
        raise DecodeError(f"not a structured CloudEvent: {exc}") from exc


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
        if name.startswith("ce_"):
            attributes[name[3:]] = raw.decode() if raw is not None else None
    if "id" not in attributes:
        raise DecodeError("record has no ce_id header: not a binary-mode CloudEvent")
    try:
        attributes["data"] = orjson.loads(value) if value else {}
        return Envelope.model_validate(attributes)
    except (orjson.JSONDecodeError, ValueError) as exc:
        raise DecodeError(f"invalid binary-mode CloudEvent: {exc}") from exc


def header(headers: Headers, name: str) -> str | None:
    """The last value of a header, decoded, or None."""
    found = None
    for key, raw in headers or ():
        if key == name and raw is not None:
            found = raw.decode(errors="replace")
    return found
