"""What the catalog tells analysts: JSON Schema per event type and one AsyncAPI document.

``write_catalog(Path("docs/events"))`` renders both (deterministically, so the
committed docs can be checked for staleness); ``check_backward_compatible``
compares a published schema with the current one (the catalog's change rule:
new optional fields only). ``python -m socialzone_common.catalog_docs`` renders
the docs and moves the compatibility baseline forward.
"""

from __future__ import annotations

import argparse
import inspect
import json
from pathlib import Path
from typing import Any

from pydantic.json_schema import models_json_schema

from socialzone_common.catalog import TOPICS, CatalogEntry, Topic, load_catalog
from socialzone_common.envelope import JSON, SPECVERSION

DIALECT = "https://json-schema.org/draft/2020-12/schema"
KAFKA_BINDING_VERSION = "0.5.0"
ASYNCAPI_VERSION = "3.0.0"
# Version of the document as a whole; every message carries its own schema version.
DOCUMENT_VERSION = "1.0.0"

Schema = dict[str, Any]


def _subject_note(entry: CatalogEntry) -> tuple[str, str]:
    """Which payload field becomes the subject and which the partition key."""
    model = entry.model
    subject_field = getattr(model, "subject_field", None)
    key_field = getattr(model, "key_field", None)
    subject = (getattr(model, "subject_description", None)
               or (f"data.{subject_field}" if subject_field else "set by the producer"))
    return subject, (f"data.{key_field}" if key_field else subject)


def _envelope_attributes(entry: CatalogEntry) -> Schema:
    """The CloudEvents attributes (without data), as they appear in structured mode."""
    subject, key = _subject_note(entry)
    return {
        "id": {"type": "string", "minLength": 1,
               "description": "Unique per source; consumers de-duplicate on (source, id)."},
        "source": {"type": "string", "minLength": 1,
                   "description": "The producing service, e.g. /socialzone/care."},
        "specversion": {"const": SPECVERSION},
        "type": {"const": entry.type},
        "subject": {"type": "string", "description": f"Subject of the event: {subject}."},
        "time": {"type": "string", "format": "date-time",
                 "description": "When the fact happened, in UTC."},
        "datacontenttype": {"const": JSON},
        "dataschema": {"const": entry.dataschema},
        "partitionkey": {"type": "string", "minLength": 1,
                         "description": f"Kafka record key: {key}."},
        "traceparent": {"type": "string",
                        "description": "W3C trace context of the change that produced the event."},
    }


_REQUIRED_ATTRIBUTES = ["id", "source", "specversion", "type", "time", "partitionkey", "data"]


def json_schema(entry: CatalogEntry) -> Schema:
    """JSON Schema (draft 2020-12) of the whole structured CloudEvent of one event type."""
    data = entry.model.model_json_schema(mode="serialization", ref_template="#/$defs/{model}")
    defs = data.pop("$defs", {})
    schema: Schema = {
        "$schema": DIALECT,
        "$id": entry.dataschema,
        "title": f"{entry.type} v{entry.version}",
        "description": entry.summary,
        "type": "object",
        "properties": {**_envelope_attributes(entry), "data": data},
        "required": list(_REQUIRED_ATTRIBUTES),
        "additionalProperties": False,
    }
    if defs:
        schema["$defs"] = defs
    return schema


def _headers_schema(entry: CatalogEntry) -> Schema:
    """Kafka binary mode: every attribute but data is a ce_* header."""
    attributes = _envelope_attributes(entry)
    del attributes["datacontenttype"]  # travels as content-type, per the Kafka binding
    properties = {f"ce_{name}": value for name, value in attributes.items()}
    properties["content-type"] = {"const": JSON}
    properties["traceparent"] = {"type": "string",
                                 "description": "Same as ce_traceparent, for tools that only know W3C."}
    required = [f"ce_{name}" for name in _REQUIRED_ATTRIBUTES if name != "data"]
    return {"type": "object", "properties": properties, "required": required}


def _message(entry: CatalogEntry, payload_ref: str) -> Schema:
    _, key = _subject_note(entry)
    return {
        "name": entry.type,
        "title": f"{entry.type} v{entry.version}",
        "summary": entry.summary,
        "description": inspect.cleandoc(entry.model.__doc__ or entry.summary),
        "contentType": JSON,
        "headers": _headers_schema(entry),
        "payload": {"$ref": payload_ref},
        "bindings": {"kafka": {
            "key": {"type": "string", "description": f"partitionkey: {key}."},
            "bindingVersion": KAFKA_BINDING_VERSION,
        }},
        "x-dataschema": entry.dataschema,
    }


def _channel(topic: Topic, entries: list[CatalogEntry]) -> Schema:
    return {
        "address": topic.name,
        "description": topic.description,
        "messages": {e.type: {"$ref": f"#/components/messages/{e.type}"} for e in entries},
        "bindings": {"kafka": {"topic": topic.name, "partitions": topic.partitions,
                               "bindingVersion": KAFKA_BINDING_VERSION}},
    }


def asyncapi_document() -> Schema:
    """AsyncAPI 3.0.0 document of every topic and event type, for analysts."""
    entries = sorted(load_catalog().values(), key=lambda e: e.type)
    refs, top = models_json_schema([(e.model, "serialization") for e in entries],
                                   ref_template="#/components/schemas/{model}")
    by_topic = {name: [e for e in entries if e.topic.name == name] for name in TOPICS}
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "socialzone events",
            "version": DOCUMENT_VERSION,
            "description": (
                "The social impact zone: every event socialzone publishes. Events are "
                "CloudEvents 1.0 in Kafka binary mode (ce_* headers, JSON value); the "
                "record key is the partitionkey, so one customer's events stay in order."
            ),
        },
        "defaultContentType": JSON,
        "servers": {"kafka": {"host": "kafka:9092", "protocol": "kafka",
                              "description": "Placeholder: the deployment's bootstrap servers."}},
        "channels": {name: _channel(TOPICS[name], found) for name, found in by_topic.items()},
        "operations": {
            f"receive.{name}": {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{name}"},
                "summary": f"Analysts and departments consume {name}.",
                "messages": [{"$ref": f"#/channels/{name}/messages/{e.type}"} for e in found],
            }
            for name, found in by_topic.items()
        },
        "components": {
            "schemas": top.get("$defs", {}),
            "messages": {e.type: _message(e, refs[(e.model, "serialization")]["$ref"])
                         for e in entries},
        },
    }


# --- files -------------------------------------------------------------------------------

def render(document: Schema) -> str:
    """The one JSON rendering of catalog files: stable bytes for stable input."""
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def schema_filename(entry: CatalogEntry) -> str:
    return f"{entry.type}.v{entry.version}.json"


def write_catalog(out_dir: Path) -> list[Path]:
    """Write asyncapi.json and schemas/<type>.v<version>.json under out_dir.

    Schema files of types no longer in the catalog are removed, so the folder
    mirrors the catalog exactly.
    """
    schemas_dir = out_dir / "schemas"
    schemas_dir.mkdir(parents=True, exist_ok=True)
    written = [_write(out_dir / "asyncapi.json", render(asyncapi_document()))]
    for entry in sorted(load_catalog().values(), key=lambda e: e.type):
        written.append(_write(schemas_dir / schema_filename(entry), render(json_schema(entry))))
    for stale in set(schemas_dir.glob("*.json")) - set(written):
        stale.unlink()
    return written


def update_snapshots(snapshot_dir: Path) -> list[Path]:
    """Move the compatibility baseline forward: snapshot every current schema.

    Refuses (ValueError) when a current schema breaks its snapshot: a breaking
    change needs a new version, not a new baseline.
    """
    snapshot_dir.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    for entry in load_catalog().values():
        path = snapshot_dir / schema_filename(entry)
        if path.exists():
            old = json.loads(path.read_text())
            problems += [f"{entry.type}: {p}" for p in check_backward_compatible(old, json_schema(entry))]
    if problems:
        raise ValueError("breaking changes:\n" + "\n".join(problems))
    return [_write(snapshot_dir / schema_filename(e), render(json_schema(e)))
            for e in sorted(load_catalog().values(), key=lambda e: e.type)]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- compatibility -----------------------------------------------------------------------

def check_backward_compatible(old_schema: Schema, new_schema: Schema) -> list[str]:
    """Problems that make new_schema break readers or data of old_schema; [] when compatible.

    Breaking: a removed property, a changed type (JSON types, or enum values
    removed), a newly required property, and a required property that became
    optional. A new optional property is fine. ``$ref`` targets are compared by
    what they describe, so renaming a model alone breaks nothing.
    """
    return _Comparison(old_schema, new_schema).run()


class _Comparison:
    def __init__(self, old_root: Schema, new_root: Schema) -> None:
        self.old_root, self.new_root = old_root, new_root
        self.problems: list[str] = []
        self.seen: set[tuple[int, int]] = set()

    def run(self) -> list[str]:
        self.compare(self.old_root, self.new_root, "")
        return self.problems

    def compare(self, old: Schema, new: Schema, path: str) -> None:
        old, new = _resolve(self.old_root, old), _resolve(self.new_root, new)
        if (id(old), id(new)) in self.seen:  # recursive schemas: each pair once
            return
        self.seen.add((id(old), id(new)))
        old_branches = _branches(self.old_root, old)
        new_branches = _branches(self.new_root, new)
        if set(old_branches) != set(new_branches):
            self.problems.append(f"{path or '(root)'}: type changed from "
                                 f"{_types(old_branches)} to {_types(new_branches)}")
        for json_type in old_branches.keys() & new_branches.keys():
            old_of_type, new_of_type = old_branches[json_type], new_branches[json_type]
            if len(old_of_type) == 1 and len(new_of_type) == 1:  # unions of objects: types only
                self.compare_same_type(json_type, old_of_type[0], new_of_type[0], path)

    def compare_same_type(self, json_type: str, old: Schema, new: Schema, path: str) -> None:
        old_values, new_values = _enum(old), _enum(new)
        if new_values is not None:
            if old_values is None:
                self.problems.append(f"{path}: type changed: now restricted to {_listing(new_values)}")
            elif old_values - new_values:
                self.problems.append(f"{path}: type changed: {_listing(old_values - new_values)} "
                                     "no longer allowed")
        if json_type == "object":
            self.compare_objects(old, new, path)
        elif json_type == "array" and isinstance(old.get("items"), dict) and isinstance(new.get("items"), dict):
            self.compare(old["items"], new["items"], f"{path}[]")

    def compare_objects(self, old: Schema, new: Schema, path: str) -> None:
        old_props, new_props = old.get("properties", {}), new.get("properties", {})
        old_required, new_required = set(old.get("required", ())), set(new.get("required", ()))
        for name, old_prop in old_props.items():
            where = f"{path}.{name}" if path else name
            if name not in new_props:
                self.problems.append(f"{where}: property removed")
                continue
            self.compare(old_prop, new_props[name], where)
            if name in old_required and name not in new_required:
                self.problems.append(f"{where}: no longer required (readers of the old schema rely on it)")
        for name in sorted(new_required - old_required):
            self.problems.append(f"{f'{path}.{name}' if path else name}: newly required")
        old_extra, new_extra = old.get("additionalProperties"), new.get("additionalProperties")
        if isinstance(old_extra, dict) and isinstance(new_extra, dict):  # maps such as metrics
            self.compare(old_extra, new_extra, f"{path}{{}}")


def _resolve(root: Schema, schema: Schema) -> Schema:
    """Follow local $refs ("#/..." JSON pointers) to the schema they name."""
    hops = 0
    while isinstance(schema, dict) and "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#"):
            raise ValueError(f"only local $refs are supported, not {ref!r}")
        target: Any = root
        for part in filter(None, ref[1:].split("/")):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        schema, hops = target, hops + 1
        if hops > 64:
            raise ValueError(f"$ref cycle at {ref!r}")
    if isinstance(schema, dict) and len(schema.get("allOf", ())) == 1:
        return _resolve(root, schema["allOf"][0])
    return schema


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    for python_type, name in ((bool, "boolean"), (int, "integer"), (float, "number"),
                              (str, "string"), (list, "array"), (dict, "object")):
        if isinstance(value, python_type):
            return name
    raise TypeError(f"not a JSON value: {value!r}")


def _branches(root: Schema, schema: Schema) -> dict[str, list[Schema]]:
    """The JSON types a schema allows, each with the (sub)schemas that describe it."""
    schema = _resolve(root, schema)
    union = schema.get("anyOf") or schema.get("oneOf")
    if union:
        merged: dict[str, list[Schema]] = {}
        for branch in union:
            for json_type, found in _branches(root, branch).items():
                merged.setdefault(json_type, []).extend(found)
        return merged
    declared = schema.get("type")
    if isinstance(declared, str):
        types = [declared]
    elif isinstance(declared, list):
        types = declared
    elif "const" in schema:
        types = [_json_type(schema["const"])]
    elif "enum" in schema:
        types = sorted({_json_type(v) for v in schema["enum"]})
    elif "properties" in schema:
        types = ["object"]
    else:
        types = ["any"]
    return {t: [schema] for t in types}


def _types(branches: dict[str, list[Schema]]) -> str:
    return "|".join(sorted(branches))


def _listing(values: set[str]) -> str:
    return ", ".join(sorted(values))


def _enum(schema: Schema) -> set[str] | None:
    """The allowed values (as JSON text, so that 1 and true stay apart), or None: any."""
    if "const" in schema:
        return {json.dumps(schema["const"], sort_keys=True)}
    if "enum" in schema:
        return {json.dumps(v, sort_keys=True) for v in schema["enum"]}
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/events"))
    parser.add_argument("--snapshots", type=Path, default=None,
                        help="also move the compatibility baseline forward (tests/catalog_snapshots)")
    args = parser.parse_args(argv)
    for path in write_catalog(args.out):
        print(path)
    if args.snapshots:
        for path in update_snapshots(args.snapshots):
            print(path)


if __name__ == "__main__":
    main()
