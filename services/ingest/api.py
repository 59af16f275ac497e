"""Ingest's HTTP API (under ``/ingest/v1``): thin routers that parse, authorize and call
the domain. Bodies are read here, within the payload limit, because the connectors take
the platforms' raw formats (JSON, NDJSON, CSV) rather than one FastAPI model.

Every write needs ``ingest:write`` and is refused with 429 + Retry-After while the
outbox backlog is above its limit; reads need ``ingest:read``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter, ValidationError
from sqlmodel import Session, col, select

from socialzone_common.db import transaction
from socialzone_common.deps import RuntimeDep, get_settings, require
from socialzone_common.errors import NotFound, ProblemError, Unprocessable
from socialzone_common.pagination import MAX_LIMIT, Page, decode_cursor, page_of
from socialzone_common.service import ServiceRuntime

from socialzone_ingest import domain, feeds
from socialzone_ingest.connectors import crm, mastodon, reddit, x
from socialzone_ingest.enrich import enricher_for
from socialzone_ingest.models import (
    BatchResult, EnrichIn, EnrichOut, Feed, FeedCreate, FeedPublic, FieldError, InteractionIn,
    InteractionPublic, InteractionRow, ItemResult, SingleResult,
)
from socialzone_ingest.settings import IngestSettings

router = APIRouter(tags=["ingest"])
IngestSettingsDep = Annotated[IngestSettings, Depends(get_settings)]
WRITE = require("ingest:write")
READ = require("ingest:read")
T = TypeVar("T")

NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines")
CSV_TYPES = ("text/csv", "application/csv")


class PayloadTooLarge(ProblemError):
    status, title, slug = 413, "Payload too large", "payload-too-large"


# --- request plumbing -----------------------------------------------------------------------------

async def read_body(request: Request, settings: IngestSettings) -> bytes:
    """The raw body, refused with 413 as soon as it passes the limit (never read whole first)."""
    limit = settings.ingest_max_payload_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body: {declared} bytes is more than the limit of {limit}", limit=limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body: more than the limit of {limit} bytes", limit=limit)
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # Starlette's own cache: request.form() reads it from there
    return body


_BOM = b"\xef\xbb\xbf"


def parse_json(body: bytes) -> Any:
    body = body.removeprefix(_BOM)  # RFC 8259 lets a parser ignore it; Windows tools write one
    if not body.strip():
        raise Unprocessable("body: a JSON body is required", errors=[{"field": "body", "message": "empty"}])
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Unprocessable(f"body: not valid JSON: {exc}",
                            errors=[{"field": "body", "message": f"not valid JSON: {exc}"}]) from None


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "application/json").split(";")[0].strip().lower()


async def in_transaction(runtime: ServiceRuntime, work: Callable[[Session], T]) -> T:
    """Run ``work`` in one transaction in a worker thread (the database API is blocking)."""
    def run() -> T:
        with transaction(runtime.sessions) as session:
            return work(session)

    return await run_in_threadpool(run)


async def ensure_capacity(runtime: ServiceRuntime, settings: IngestSettings) -> None:
    def check() -> None:
        with runtime.sessions() as session:
            domain.ensure_capacity(session, limit=settings.ingest_backlog_limit,
                                   retry_after_s=settings.ingest_retry_after_s)

    await run_in_threadpool(check)


def check_batch_size(count: int, settings: IngestSettings) -> None:
    if count > settings.ingest_max_batch_items:
        raise PayloadTooLarge(f"body: {count} items is more than the limit of {settings.ingest_max_batch_items} "
                              "per request", limit=settings.ingest_max_batch_items)


def batch_response(result: BatchResult, *, unit: str = "line", success_status: int = 202,
                   array: bool = False) -> Response:
    """202 with a result per item; 422 (a problem document naming the fields) when every item
    was rejected, since then nothing at all was accepted.

    In the problem, a field is named from the request's root: ``[3].author.identifiers[0].value``
    in a JSON array, the platform's path in a connector payload (``data[2].created_at``), and
    the column with the row (CSV) or line (NDJSON) in the message. ``array``: the body was a JSON
    array (its items are named by index even when there is only one).
    """
    if result.results and result.rejected == len(result.results):
        errors = []
        for item in result.results:
            for error in item.errors or []:
                field = error.field if item.path or item.line or (len(result.results) == 1 and not array) \
                    else f"[{item.index}].{error.field}"
                message = f"{unit} {item.line}: {error.message}" if item.line else error.message
                errors.append({"field": field, "message": message, "index": item.index,
                               **({unit: item.line} if item.line else {})})
        first = errors[0] if errors else {"field": "body", "message": "invalid"}
        raise Unprocessable(f"{first['field']}: {first['message']}", errors=errors,
                            results=[r.model_dump(exclude_none=True) for r in result.results])
    # serialized by pydantic in one call (a result per item: JSONResponse's json.dumps of the
    # dumped dicts costs several times more on a batch of 500)
    return Response(result.model_dump_json(exclude_none=True), status_code=success_status,
                    media_type="application/json")


OPENAPI_JSON_OR_NDJSON = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"oneOf": [
        {"$ref": "#/components/schemas/InteractionIn"},
        {"type": "array", "items": {"$ref": "#/components/schemas/InteractionIn"}}]}},
    "application/x-ndjson": {"schema": {"type": "string", "description": "one InteractionIn per line"}},
}}}


def raw_body_doc(description: str, media: tuple[str, ...] = ("application/json",)) -> dict:
    return {"requestBody": {"required": True, "description": description,
                            "content": {m: {"schema": {"type": "object"} if "json" in m else {"type": "string"}}
                                        for m in media}}}


# --- the canonical interaction --------------------------------------------------------------------

@router.post("/interactions", status_code=202, dependencies=[WRITE], openapi_extra=OPENAPI_JSON_OR_NDJSON,
             response_model=SingleResult | BatchResult,
             summary="Record one interaction, a JSON array of them or NDJSON (one per line)",
             responses={413: {}, 422: {}, 429: {}})
async def post_interactions(request: Request, runtime: RuntimeDep, settings: IngestSettingsDep) -> Response:
    await ensure_capacity(runtime, settings)
    body = await read_body(request, settings)
    ndjson = media_type(request) in NDJSON_TYPES
    # The fast path: a JSON array whose items are all valid is validated in one call from
    # its bytes. Anything else (one invalid item, NDJSON, a single object) goes item by item,
    # which names each bad item's fields.
    valid = None if ndjson or body.lstrip()[:1] != b"[" else await run_in_threadpool(_valid_batch, body)
    if valid:
        single = False
        check_batch_size(len(valid), settings)
        candidates = [domain.Candidate(item=item, index=index) for index, item in enumerate(valid)]
        rejected: list[ItemResult] = []
    else:
        single, raws, lines = _split(body, ndjson=ndjson)
        check_batch_size(len(raws), settings)
        candidates, rejected = await run_in_threadpool(_validate_items, raws, lines)

    def work(session: Session) -> BatchResult:
        outcome = domain.record(session, candidates=candidates, enricher=enricher_for(settings),
                                default_region=settings.default_phone_region)
        return domain.summarize(rejected + outcome.results)

    result = await in_transaction(runtime, work) if candidates else domain.summarize(rejected)
    if single:
        item = result.results[0]
        if item.status == "rejected":
            errors = [e.model_dump() for e in item.errors or []]
            raise Unprocessable(f"{errors[0]['field']}: {errors[0]['message']}", errors=errors)
        single_result = SingleResult(interaction_id=item.interaction_id, status=item.status, errors=item.errors)
        return JSONResponse(single_result.model_dump(mode="json", exclude_none=True), status_code=202)
    return batch_response(result, array=not ndjson)


def _split(body: bytes, *, ndjson: bool) -> tuple[bool, list, list]:
    """(single object?, the items as parsed, their NDJSON line numbers or None each)."""
    if ndjson:
        raws, lines = [], []
        for number, line in enumerate(body.removeprefix(_BOM).splitlines(), start=1):
            if line.strip():
                try:
                    raws.append(orjson.loads(line))
                except orjson.JSONDecodeError as exc:
                    raws.append(_BadLine(str(exc)))
                lines.append(number)
        if not raws:
            raise Unprocessable("body: no NDJSON lines", errors=[{"field": "body", "message": "empty"}])
        return False, raws, lines
    payload = parse_json(body)
    single = isinstance(payload, dict)
    raws = [payload] if single else payload
    if not isinstance(raws, list) or (not single and not raws):
        raise Unprocessable("body: an interaction object or a non-empty array of them is required",
                            errors=[{"field": "body", "message": "an object or a non-empty array"}])
    return single, raws, [None] * len(raws)


_BATCH = TypeAdapter(list[InteractionIn])


def _valid_batch(body: bytes) -> list[InteractionIn] | None:
    """Every item of a JSON array as an ``InteractionIn`` in one validation of the raw bytes
    (no intermediate dicts), or None when any item is invalid (or the body is not an array)."""
    try:
        return _BATCH.validate_json(body)
    except ValidationError:
        return None


def _validate_items(raws: list, lines: list) -> tuple[list[domain.Candidate], list[ItemResult]]:
    """Each item as an ``InteractionIn``, or its rejection with the fields at fault."""
    candidates: list[domain.Candidate] = []
    rejected: list[ItemResult] = []
    for index, (raw, line) in enumerate(zip(raws, lines)):
        if isinstance(raw, _BadLine):
            rejected.append(ItemResult(index=index, line=line, status="rejected",
                                       errors=[FieldError(field="body", message=f"not valid JSON: {raw.error}")]))
            continue
        try:
            candidates.append(domain.Candidate(item=InteractionIn.model_validate(raw), index=index, line=line))
        except ValidationError as exc:
            rejected.append(ItemResult(index=index, line=line, status="rejected",
                                       errors=domain.validation_errors(exc)))
    return candidates, rejected


class _BadLine:
    def __init__(self, error: str) -> None:
        self.error = error


@router.get("/interactions/{interaction_id}", dependencies=[READ], response_model=InteractionPublic,
            summary="A recorded interaction with its enrichment")
def get_interaction(interaction_id: str, runtime: RuntimeDep) -> InteractionPublic:
    with runtime.sessions() as session:
        row = session.get(InteractionRow, interaction_id)
    if row is None:
        raise NotFound(f"no interaction {interaction_id}")
    return _public(row)


def _public(row: InteractionRow) -> InteractionPublic:
    return InteractionPublic(interaction=orjson.loads(row.document), retracted_at=row.retracted_at,
                             erased_at=row.erased_at, customer_id=row.customer_id)


@router.get("/interactions", dependencies=[READ], response_model=Page[InteractionPublic],
            summary="Recorded interactions, newest first, by source and author key")
def list_interactions(runtime: RuntimeDep,
                      source: str | None = Query(default=None, max_length=64, pattern=r"^[a-z][a-z0-9_.-]*$"),
                      author_key: str | None = Query(default=None, pattern=r"^author:[0-9a-f]{32}$"),
                      cursor: str | None = None,
                      limit: int = Query(default=50, ge=1, le=MAX_LIMIT)) -> Page[InteractionPublic]:
    position = decode_cursor(cursor, expect={"at": str, "id": str})
    with runtime.sessions() as session:
        query = select(InteractionRow)
        if source:
            query = query.where(InteractionRow.source == source)
        if author_key:
            query = query.where(InteractionRow.author_key == author_key)
        if position:
            try:
                at = datetime.fromisoformat(position["at"])
            except ValueError:
                raise Unprocessable("cursor: not a cursor returned by this API",
                                    errors=[{"field": "cursor", "message": "not a cursor returned by this API"}]) from None
            query = query.where((col(InteractionRow.recorded_at) < at) | (
                (col(InteractionRow.recorded_at) == at) & (col(InteractionRow.id) < position["id"])))
        rows = list(session.exec(query.order_by(col(InteractionRow.recorded_at).desc(),
                                                col(InteractionRow.id).desc()).limit(limit + 1)))
    rows, next_cursor = page_of(rows, limit, lambda r: {"at": r.recorded_at.isoformat(), "id": r.id})
    return Page[InteractionPublic](items=[_public(r) for r in rows], next_cursor=next_cursor)


@router.post("/enrich", dependencies=[READ], response_model=EnrichOut,
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": EnrichIn.model_json_schema()}}}},
             summary="The enrichment of a text, without recording anything", responses={413: {}, 422: {}})
async def enrich(request: Request, settings: IngestSettingsDep) -> EnrichOut:
    # the body is read here, within the payload limit (a body parameter would be read whole first)
    payload = parse_json(await read_body(request, settings))
    try:
        body = EnrichIn.model_validate(payload)
    except ValidationError as exc:
        errors = [e.model_dump() for e in domain.validation_errors(exc)]
        raise Unprocessable(f"{errors[0]['field']}: {errors[0]['message']}", errors=errors) from None
    enrichment = await run_in_threadpool(enricher_for(settings).enrich, body.text, declared_language=body.language)
    return EnrichOut(enrichment=enrichment)


# --- connectors ------------------------------------------------------------------------------------

async def _connector(request: Request, runtime: RuntimeDep, settings: IngestSettings, parse) -> Response:
    await ensure_capacity(runtime, settings)
    payload = parse_json(await read_body(request, settings))
    parsed = await run_in_threadpool(parse, payload)
    check_batch_size(parsed.count, settings)
    return batch_response(await apply(runtime, settings, parsed))


async def apply(runtime: ServiceRuntime, settings: IngestSettings, parsed) -> BatchResult:
    """Record a connector's items and apply its deletions, in one transaction (in a worker thread)."""
    return await in_transaction(runtime, lambda session: domain.apply(
        session, parsed=parsed, enricher=enricher_for(settings), default_region=settings.default_phone_region))


@router.post("/sources/x", status_code=202, dependencies=[WRITE], response_model=BatchResult,
             openapi_extra=raw_body_doc("An X API v2 response (data, includes.users) or compliance events"),
             summary="Posts from the X API v2, and its delete notices")
async def post_x(request: Request, runtime: RuntimeDep, settings: IngestSettingsDep) -> Response:
    return await _connector(request, runtime, settings, x.parse)


@router.post("/sources/reddit", status_code=202, dependencies=[WRITE], response_model=BatchResult,
             openapi_extra=raw_body_doc("A Reddit Listing (t3 posts, t1 comments) or a comments page"),
             summary="Posts and comments from Reddit listing JSON")
async def post_reddit(request: Request, runtime: RuntimeDep, settings: IngestSettingsDep) -> Response:
    return await _connector(request, runtime, settings, reddit.parse)


@router.post("/sources/mastodon", status_code=202, dependencies=[WRITE], response_model=BatchResult,
             openapi_extra=raw_body_doc("A Mastodon status or an array of statuses (a timeline page)"),
             summary="Mastodon statuses pushed by a client")
async def post_mastodon(request: Request, runtime: RuntimeDep, settings: IngestSettingsDep) -> Response:
    return await _connector(request, runtime, settings, mastodon.parse_statuses)


@router.post("/transactions", status_code=202, dependencies=[WRITE], response_model=BatchResult,
             openapi_extra=raw_body_doc("CRM records: JSON (one, an array, or {transactions: [...]}), a CSV "
                                        "export with a header row, or a multipart upload with a file field",
                                        ("application/json", "text/csv", "multipart/form-data")),
             summary="CRM transactions as JSON or a CSV upload; row errors name the row")
async def post_transactions(request: Request, runtime: RuntimeDep, settings: IngestSettingsDep) -> Response:
    await ensure_capacity(runtime, settings)
    body = await read_body(request, settings)
    kind = media_type(request)
    ignored: list[str] = []
    if kind == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=10)
        upload = next((v for v in form.values() if hasattr(v, "read")), None)
        if upload is None:
            raise Unprocessable("file: a CSV file is required", errors=[{"field": "file", "message": "missing"}])
        parsed, ignored = await run_in_threadpool(crm.parse_csv, _text(await upload.read(), "file"))
    elif kind in CSV_TYPES:
        parsed, ignored = await run_in_threadpool(crm.parse_csv, _text(body, "body"))
    else:
        parsed = await run_in_threadpool(crm.parse_json, parse_json(body))
    check_batch_size(parsed.count, settings)
    response = batch_response(await apply(runtime, settings, parsed), unit="row")
    if ignored:
        response.headers["X-Ignored-Columns"] = ",".join(ignored)
    return response


def _text(data: bytes, field: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Unprocessable(f"{field}: not UTF-8 text ({exc.reason} at byte {exc.start})",
                            errors=[{"field": field, "message": "not UTF-8 text"}]) from None


# --- feeds -------------------------------------------------------------------------------------------

@router.post("/feeds", status_code=201, dependencies=[WRITE], response_model=FeedPublic,
             summary="Subscribe to an RSS or Atom feed (polled on a schedule)")
def create_feed(body: FeedCreate, runtime: RuntimeDep) -> FeedPublic:
    with transaction(runtime.sessions) as session:
        feed = feeds.subscribe(session, url=body.url, kind=body.kind, source=body.source,
                               feed_id=str(uuid.uuid4()))
        return FeedPublic.model_validate(feed, from_attributes=True)


@router.get("/feeds", dependencies=[READ], response_model=Page[FeedPublic], summary="Feed subscriptions")
def list_feeds(runtime: RuntimeDep, cursor: str | None = None,
               limit: int = Query(default=50, ge=1, le=MAX_LIMIT)) -> Page[FeedPublic]:
    position = decode_cursor(cursor, expect={"id": str})
    with runtime.sessions() as session:
        query = select(Feed).order_by(col(Feed.id)).limit(limit + 1)
        if position:
            query = query.where(col(Feed.id) > position["id"])
        rows = list(session.exec(query))
    rows, next_cursor = page_of(rows, limit, lambda f: {"id": f.id})
    return Page[FeedPublic](items=[FeedPublic.model_validate(f, from_attributes=True) for f in rows],
                            next_cursor=next_cursor)


@router.get("/feeds/{feed_id}", dependencies=[READ], response_model=FeedPublic, summary="One feed subscription")
def get_feed(feed_id: str, runtime: RuntimeDep) -> FeedPublic:
    with runtime.sessions() as session:
        feed = session.get(Feed, feed_id)
    if feed is None:
        raise NotFound(f"no feed {feed_id}")
    return FeedPublic.model_validate(feed, from_attributes=True)


@router.delete("/feeds/{feed_id}", status_code=204, dependencies=[WRITE], summary="Unsubscribe from a feed")
def delete_feed(feed_id: str, runtime: RuntimeDep) -> Response:
    with transaction(runtime.sessions) as session:
        if not feeds.unsubscribe(session, feed_id=feed_id):
            raise NotFound(f"no feed {feed_id}")
    return Response(status_code=204)


@router.post("/feeds/{feed_id}/poll", dependencies=[WRITE], response_model=feeds.PollResult,
             summary="Fetch a feed now instead of waiting for its schedule")
async def poll_feed_now(feed_id: str, runtime: RuntimeDep, settings: IngestSettingsDep) -> feeds.PollResult:
    await ensure_capacity(runtime, settings)
    result = await feeds.poll_feed(runtime, feed_id)
    if result is None:
        raise NotFound(f"no feed {feed_id}")
    return result
