"""The identity HTTP API (mounted at ``/identity/v1``). Thin: parse, authorize, call the
domain, commit, shape the answer. Emails and phone numbers are masked for callers
without ``identity:pii``; reads of unmasked personal data are audited."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy import and_, bindparam, or_, select
from sqlmodel import Session

from socialzone_common.auth import Principal
from socialzone_common.deps import RuntimeDep, SessionDep, SettingsDep, require
from socialzone_common.errors import Conflict, NotFound, Unprocessable
from socialzone_common.events.common import Identifier
from socialzone_common.events.identity import IdentifierLinked
from socialzone_common.outbox import enqueue
from socialzone_common.pagination import MAX_LIMIT, decode_cursor, encode_cursor
from socialzone_identity import audit, merging, privacy, suggestions, timeline
from socialzone_identity.identifiers import InvalidIdentifier, Rules, is_pii_type, mask, type_strength
from socialzone_identity.models import AuditEntry, Customer, IdentifierLink, MatchSuggestion
from socialzone_identity.profile import current_consents, summary
from socialzone_identity.resolution import is_suppressed
from socialzone_identity.schemas import (ConsentUpdate, Decision, IdentifierCreate, MergeRequest, TimelinePage,
                                         UnmergeRequest)
from socialzone_identity.store import SOURCE, active_customer, chase, lock_customer

router = APIRouter(tags=["identity"])
I = IdentifierLink.__table__

Reader = Annotated[Principal, require("identity:read")]
Writer = Annotated[Principal, require("identity:write")]
PiiReader = Annotated[Principal, require("identity:pii")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]


_BY_IDENTIFIER = (select(Customer.__table__.c.id, Customer.__table__.c.display_name)
                  .join(I, I.c.customer_id == Customer.__table__.c.id)
                  .where(I.c.type == bindparam("t"), I.c.value == bindparam("v")))
_RULES: dict[int, Rules] = {}


def rules_of(settings) -> Rules:
    """The identifier rules of these settings (built once: normalizations are cached)."""
    rules = _RULES.get(id(settings))
    if rules is None:
        rules = _RULES[id(settings)] = Rules.from_settings(settings)
    return rules


async def _rules(request: Request) -> Rules:
    # async: a plain ``def`` dependency (like SettingsDep) costs a trip through the thread pool
    return rules_of(request.app.state.runtime.settings)


RulesDep = Annotated[Rules, Depends(_rules)]


def can_see_pii(principal: Principal) -> bool:
    return principal.allows("identity:pii")


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _utc(value: datetime | None) -> datetime | None:
    return value.astimezone(timezone.utc) if value is not None else None


def _parse_identifier(rules: Rules, text: str, field: str):
    try:
        return rules.parse(text)
    except InvalidIdentifier as exc:
        raise Unprocessable(f"{field}: {exc}", errors=[{"field": field, "message": str(exc)}]) from None


def _resolve(session: Session, customer_id: str) -> tuple[Customer, dict[str, Any]]:
    """The customer answering for ``customer_id`` and how the answer says so."""
    customer = active_customer(session, customer_id)
    return customer, {"requested_id": customer_id, "merged_into": customer.id if customer.id != customer_id else None}


def _identifier_view(row, *, pii: bool, anchors: dict[int, str] | None = None) -> dict[str, Any]:
    masked = not pii and is_pii_type(row.type)
    return {"type": row.type, "value": mask(row.type, row.value) if masked else row.value, "masked": masked,
            "strength": row.strength, "rule": row.rule, "linked_at": _aware(row.linked_at),
            "evidence": {"event_id": row.evidence_event_id, "agent": row.evidence_agent, "rule": row.rule,
                         "at": _aware(row.linked_at), "first_linked_to": row.origin_customer_id},
            "anchor": (anchors or {}).get(row.anchor_id) if row.anchor_id else None}


def _identifiers(session: Session, customer_id: str, *, pii: bool) -> list[dict[str, Any]]:
    rows = session.execute(select(I).where(I.c.customer_id == customer_id).order_by(I.c.id)).all()
    anchors = {r.id: f"{r.type}:{r.value}" for r in rows}
    return [_identifier_view(r, pii=pii, anchors=anchors) for r in rows]


def mask_event(data: dict[str, Any] | None) -> dict[str, Any] | None:
    """An event's data with e-mail addresses and phone numbers of identifiers masked."""
    if not data:
        return data

    def fix(identifier: dict) -> dict:
        if isinstance(identifier, dict) and is_pii_type(identifier.get("type", "")):
            return {**identifier, "value": mask(identifier["type"], identifier.get("value") or "")}
        return identifier

    data = dict(data)
    for key in ("matched_by", "identifier"):
        if isinstance(data.get(key), dict):
            data[key] = fix(data[key])
    if isinstance(data.get("identifiers_moved"), list):
        data["identifiers_moved"] = [fix(i) for i in data["identifiers_moved"]]
    interaction = data.get("interaction")
    if isinstance(interaction, dict) and isinstance(interaction.get("author"), dict):
        author = dict(interaction["author"])
        author["identifiers"] = [fix(i) for i in author.get("identifiers") or []]
        data["interaction"] = {**interaction, "author": author}
    return data


def _customer_view(session: Session, customer: Customer, *, pii: bool) -> dict[str, Any]:
    profile = customer.profile or {}
    fields = {name: f["v"] for name, f in (profile.get("fields") or {}).items()}
    return {
        "id": customer.id, "status": customer.status, "created_at": _aware(customer.created_at),
        "updated_at": _aware(customer.updated_at), "display_name": customer.display_name,
        "names": profile.get("names") or [], "locations": profile.get("locations") or [],
        "profile": fields,
        "identifiers": _identifiers(session, customer.id, pii=pii),
        **summary(session, customer),
        "consents": list(current_consents(session, customer.id).values()),
        "merged_ids": [m for m in session.execute(select(Customer.id).where(Customer.merged_into == customer.id,
                                                                              Customer.status == "merged")).scalars()],
    }


# --- customers -------------------------------------------------------------------------------

# response_model=None: a sync endpoint's answer is otherwise validated in a second trip
# through the thread pool (measured: a large part of a lookup's time)
@router.get("/customers", summary="Find customers by identifier (type:value) or by name", response_model=None)
def find_customers(session: SessionDep, rules: RulesDep, principal: Reader,
                   identifier: Annotated[str | None, Query(description="`type:value`, e.g. x_handle:acme_fan")] = None,
                   q: Annotated[str | None, Query(min_length=2, max_length=200, description="Part of a name")] = None,
                   cursor: str | None = None, limit: Limit = 50) -> dict:
    if (identifier is None) == (q is None):
        raise Unprocessable("give exactly one of identifier or q",
                            errors=[{"field": "identifier", "message": "give exactly one of identifier or q"}])
    pii = can_see_pii(principal)
    if identifier is not None:
        n = _parse_identifier(rules, identifier, "identifier")
        row = session.connection().execute(_BY_IDENTIFIER, {"t": n.type, "v": n.value}).first()
        items = []
        if row is not None:
            items.append({"id": row.id, "display_name": row.display_name,
                          "matched_identifier": {"type": n.type, "value": n.value if pii or not is_pii_type(n.type)
                                                 else mask(n.type, n.value)}})
        return {"items": items, "next_cursor": None}
    position = decode_cursor(cursor, expect={"id": str})
    conditions = [Customer.status == "active", Customer.search_text.contains(q.lower(), autoescape=True)]
    if position:
        conditions.append(Customer.id > position["id"])
    rows = session.execute(select(Customer.id, Customer.display_name, Customer.search_text).where(*conditions)
                           .order_by(Customer.id).limit(limit + 1)).all()
    next_cursor = encode_cursor({"id": rows[limit - 1].id}) if len(rows) > limit else None
    return {"items": [{"id": r.id, "display_name": r.display_name,
                       "names": [n for n in (r.search_text or "").split(" | ") if n]} for r in rows[:limit]],
            "next_cursor": next_cursor}


@router.get("/customers/{customer_id}", summary="Customer 360: profile, identifiers, activity, cases, leads, consents")
def get_customer(customer_id: str, session: SessionDep, principal: Reader) -> dict:
    customer, how = _resolve(session, customer_id)
    pii = can_see_pii(principal)
    body = {**_customer_view(session, customer, pii=pii), **how}
    if pii:
        audit.record(session, actor=principal.name, action="pii_read", customer_id=customer.id, what="customer")
        session.commit()
    return body


@router.get("/customers/{customer_id}/identifiers", summary="Every identifier with its evidence")
def get_identifiers(customer_id: str, session: SessionDep, principal: Reader) -> dict:
    customer, how = _resolve(session, customer_id)
    pii = can_see_pii(principal)
    items = _identifiers(session, customer.id, pii=pii)
    if pii:
        audit.record(session, actor=principal.name, action="pii_read", customer_id=customer.id, what="identifiers")
        session.commit()
    return {"customer_id": customer.id, **how, "items": items}


@router.post("/customers/{customer_id}/identifiers", status_code=201,
             summary="Link an identifier by hand (the agent is the evidence)")
def link_identifier(customer_id: str, body: IdentifierCreate, session: SessionDep, settings: SettingsDep,
                    principal: Writer) -> dict:
    rules = rules_of(settings)
    try:
        n = rules.normalize(body.type, body.value)
    except InvalidIdentifier as exc:
        raise Unprocessable(f"value: {exc}", errors=[{"field": "value", "message": str(exc)}]) from None
    customer = lock_customer(session, customer_id)
    if is_suppressed(session, rules, [n]):
        # an erased person's identifier: linking it by hand would re-create what the erasure forgot
        raise Conflict(f"the {n.type} identifier belongs to an erased customer and cannot be linked again")
    existing = session.execute(select(I).where(I.c.type == n.type, I.c.value == n.value)).first()
    if existing is not None:
        if existing.customer_id == customer.id:
            raise Conflict(f"{n.type} identifier is already linked to {customer.id}")
        raise Conflict(f"the {n.type} identifier belongs to customer {existing.customer_id}; merge the two customers "
                       "instead (POST /v1/merges)", other_customer_id=existing.customer_id)
    count = len([r for r in _identifiers(session, customer.id, pii=True) if r["type"] == n.type])
    if count >= rules.cap(n.type):
        raise Conflict(f"customer {customer.id} already has {count} {n.type} identifiers (the cap)")
    from socialzone_common.envelope import now_utc

    now = now_utc()
    strength = type_strength(n.type, vouched=True)
    envelope = enqueue(session, IdentifierLinked(customer_id=customer.id, identifier=Identifier(type=n.type, value=n.value),
                                                 strength=strength, rule="agent").to_envelope(source=SOURCE))
    session.execute(I.insert().values(type=n.type, value=n.value, customer_id=customer.id,
                                      origin_customer_id=customer.id, strength=strength, rule="agent",
                                      evidence_event_id=envelope.id, evidence_agent=principal.name, linked_at=now,
                                      last_seen_at=now))
    audit.record(session, actor=principal.name, action="identifier", customer_id=customer.id, reason=body.reason,
                 identifier_type=n.type)
    session.commit()
    return {"customer_id": customer.id, "type": n.type, "value": n.value if can_see_pii(principal) else mask(n.type, n.value),
            "strength": strength, "rule": "agent", "event_id": envelope.id}


# --- timeline --------------------------------------------------------------------------------

def _timeline_item(row, *, include_event: bool, pii: bool) -> dict[str, Any]:
    item = {"id": row.id, "event_id": row.event_id, "type": row.event_type, "department": row.department,
            "occurred_at": _aware(row.occurred_at), "summary": row.summary, "channel": row.channel,
            "interaction_id": row.interaction_id, "retracted": row.retracted,
            "origin_customer_id": row.origin_customer_id}
    if include_event:
        item["event"] = row.event if pii else mask_event(row.event)
    return item


@router.get("/customers/{customer_id}/timeline", response_model=TimelinePage,
            summary="The customer's timeline, newest first (merged histories included)")
def get_timeline(customer_id: str, session: SessionDep, principal: Reader,
                 types: Annotated[str | None, Query(description="Comma-separated event types; `care.*` for a prefix")] = None,
                 department: Annotated[str | None, Query(description=", ".join(timeline.DEPARTMENTS))] = None,
                 since: datetime | None = None, until: datetime | None = None, cursor: str | None = None,
                 limit: Limit = 50, include: Annotated[str | None, Query(pattern="^event$")] = None) -> dict:
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise Unprocessable(f"{name}: give a time zone (e.g. 2026-01-01T00:00:00Z)",
                                errors=[{"field": name, "message": "give a time zone"}])
    found = chase(session, customer_id)
    if found is None or found[1] == "erased":
        raise NotFound(f"customer {customer_id} not found" if found is None else f"customer {customer_id} was erased")
    customer = SimpleNamespace(id=found[0])
    how = {"requested_id": customer_id, "merged_into": customer.id if customer.id != customer_id else None}
    rows, next_cursor = timeline.query_page(session, customer_id=customer.id, types=timeline.parse_types(types),
                                            department=department, since=_utc(since), until=_utc(until), cursor=cursor,
                                            limit=limit, include_event=include == "event")
    pii = can_see_pii(principal)
    items = [_timeline_item(r, include_event=include == "event", pii=pii) for r in rows]
    if pii and include == "event":
        audit.record(session, actor=principal.name, action="pii_read", customer_id=customer.id, what="timeline")
        session.commit()
    return {"customer_id": customer.id, **how, "items": items, "next_cursor": next_cursor}


@router.get("/customers/{customer_id}/timeline/stream", summary="New timeline entries, live (server-sent events)",
            response_class=StreamingResponse)
async def stream_timeline(customer_id: str, request: Request, runtime: RuntimeDep, principal: Reader,
                          include: Annotated[str | None, Query(pattern="^event$")] = None,
                          max_seconds: Annotated[float, Query(gt=0, le=3600)] = 300.0) -> StreamingResponse:
    """Each entry is an SSE ``timeline`` event whose ``id`` is the entry id; reconnect with
    ``Last-Event-ID`` to continue. The stream ends after ``max_seconds`` (clients reconnect)."""
    pii = can_see_pii(principal)

    def start() -> tuple[str, int]:
        with runtime.sessions() as session:
            customer, _ = _resolve(session, customer_id)
            from sqlalchemy import func

            last = session.execute(select(func.max(timeline.T.c.id))).scalar() or 0
            if pii and include == "event":
                # the stream sends unmasked events like the timeline page does: audited the same
                # way, once per stream (a reconnect is a new stream and a new entry)
                audit.record(session, actor=principal.name, action="pii_read", customer_id=customer.id,
                             what="timeline_stream")
                session.commit()
            return customer.id, last

    resolved, last_id = await asyncio.to_thread(start)
    header = request.headers.get("last-event-id")
    if header and header.isdigit():
        last_id = int(header)
    poll = runtime.settings.timeline_stream_poll_s

    def fetch(after: int) -> tuple[list[dict[str, Any]], str]:
        with runtime.sessions() as session:
            current = chase(session, resolved)
            target = current[0] if current else resolved
            rows, _ = timeline.query_page(session, customer_id=target, types=[], department=None, since=None,
                                          until=None, cursor=None, limit=MAX_LIMIT, after_id=after,
                                          include_event=include == "event")
            return [_timeline_item(r, include_event=include == "event", pii=pii) for r in reversed(rows)], target

    async def events():
        nonlocal last_id
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_seconds
        yield "retry: 2000\n\n"
        while loop.time() < deadline:
            if await request.is_disconnected():
                return
            items, _ = await asyncio.to_thread(fetch, last_id)
            for item in items:
                last_id = max(last_id, item["id"])
                yield f"event: timeline\nid: {item['id']}\ndata: {json.dumps(item, default=str)}\n\n"
            await asyncio.sleep(poll)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


# --- merges ----------------------------------------------------------------------------------

@router.post("/merges", summary="Merge two customers (the older id survives); dry_run previews")
def post_merge(body: MergeRequest, session: SessionDep, settings: SettingsDep, principal: Writer) -> JSONResponse:
    first, second = body.customer_ids
    rules = rules_of(settings)
    if body.dry_run:
        result = merging.preview(session, rules=rules, first=first, second=second)
        return JSONResponse(_jsonable({"dry_run": True, **result}))
    record = merging.merge(session, rules=rules, first=first, second=second, rule="manual", actor=principal.name,
                           reason=body.reason, enforce_caps=False)
    session.commit()
    customer = session.get(Customer, record.survivor_id)
    return JSONResponse(_jsonable({"dry_run": False, "survivor_id": record.survivor_id, "merged_id": record.merged_id,
                                   "event_id": record.event_id,
                                   "customer": _customer_view(session, customer, pii=can_see_pii(principal))}),
                        status_code=201)


@router.post("/customers/{customer_id}/unmerge", summary="Split a merged customer off again")
def post_unmerge(customer_id: str, body: UnmergeRequest, session: SessionDep, settings: SettingsDep,
                 principal: Writer) -> dict:
    rules = rules_of(settings)
    identifiers = None
    if body.identifiers is not None:
        parsed = [_parse_identifier(rules, text, f"identifiers[{i}]") for i, text in enumerate(body.identifiers)]
        identifiers = [(n.type, n.value) for n in parsed]
    result = merging.unmerge(session, customer_id=customer_id, restored_customer_id=body.restored_customer_id,
                             identifiers=identifiers, actor=principal.name, reason=body.reason)
    session.commit()
    pii = can_see_pii(principal)
    result["moved"] = [{"type": i.type, "value": i.value if pii or not is_pii_type(i.type) else mask(i.type, i.value)}
                       for i in result["moved"]]
    return result


# --- match suggestions -----------------------------------------------------------------------

def _suggestion_view(s: MatchSuggestion) -> dict[str, Any]:
    return {"id": s.id, "customer_ids": [s.customer_a, s.customer_b], "status": s.status, "rule": s.rule,
            "probability": s.probability, "weight": s.weight, "features": s.features,
            "evidence_event_id": s.evidence_event_id, "created_at": _aware(s.created_at),
            "decided_at": _aware(s.decided_at), "decided_by": s.decided_by, "decision_reason": s.decision_reason}


@router.get("/match-suggestions", summary="Match suggestions for review")
def list_suggestions(session: SessionDep, principal: Reader,
                     status: Annotated[str, Query(pattern="^(open|accepted|rejected|superseded)$")] = "open",
                     customer_id: str | None = None, cursor: str | None = None, limit: Limit = 50) -> dict:
    position = decode_cursor(cursor, expect={"id": int})
    conditions = [MatchSuggestion.status == status]
    if customer_id:
        conditions.append(or_(MatchSuggestion.customer_a == customer_id, MatchSuggestion.customer_b == customer_id))
    if position:
        conditions.append(MatchSuggestion.id < position["id"])
    rows = session.execute(select(MatchSuggestion).where(*conditions).order_by(MatchSuggestion.id.desc())
                           .limit(limit + 1)).scalars().all()
    next_cursor = encode_cursor({"id": rows[limit - 1].id}) if len(rows) > limit else None
    return {"items": [_suggestion_view(s) for s in rows[:limit]], "next_cursor": next_cursor}


@router.post("/match-suggestions/{suggestion_id}/accept", summary="Accept: merge the two customers")
def accept_suggestion(suggestion_id: int, session: SessionDep, settings: SettingsDep, principal: Writer,
                      body: Decision | None = None) -> dict:
    s = suggestions.accept(session, rules=rules_of(settings), suggestion_id=suggestion_id, actor=principal.name,
                           reason=body.reason if body else None)
    session.commit()
    return _suggestion_view(s)


@router.post("/match-suggestions/{suggestion_id}/reject", summary="Reject: never suggest this pair again")
def reject_suggestion(suggestion_id: int, session: SessionDep, principal: Writer, body: Decision | None = None) -> dict:
    s = suggestions.reject(session, suggestion_id=suggestion_id, actor=principal.name, reason=body.reason if body else None)
    session.commit()
    return _suggestion_view(s)


# --- consent, erasure, export, audit --------------------------------------------------------

@router.put("/customers/{customer_id}/consents/{purpose}", summary="Grant or withdraw consent for a purpose")
def put_consent(customer_id: str, purpose: str, body: ConsentUpdate, session: SessionDep, settings: SettingsDep,
                principal: Writer) -> dict:
    result = privacy.set_consent(session, customer_id=customer_id, purpose=purpose, granted=body.granted,
                                 source=body.source, changed_at=body.changed_at, actor=principal.name,
                                 reason=body.reason, purposes=list(settings.consent_purposes))
    session.commit()
    return result


@router.get("/customers/{customer_id}/consents", summary="Current consents and their full history")
def get_consents(customer_id: str, session: SessionDep, principal: Reader) -> dict:
    customer, how = _resolve(session, customer_id)
    return {"customer_id": customer.id, **how, "current": list(current_consents(session, customer.id).values()),
            "history": privacy.consent_history(session, customer.id)}


@router.delete("/customers/{customer_id}", status_code=202, summary="Right to erasure: forget the customer",
               dependencies=[require("identity:pii")])
def delete_customer(customer_id: str, session: SessionDep, settings: SettingsDep, principal: Writer,
                    reason: Annotated[str | None, Query(max_length=1000)] = None) -> dict:
    erasure = privacy.request_erasure(session, rules=rules_of(settings), customer_id=customer_id,
                                      actor=principal.name, reason=reason, services=list(settings.erasure_services))
    session.commit()
    return {**privacy.erasure_view(erasure), "erasure_id": erasure.id}


@router.get("/erasures/{erasure_id}", summary="An erasure and each service's completion")
def get_erasure(erasure_id: str, session: SessionDep, principal: Reader) -> dict:
    return privacy.erasure_view(privacy.get_erasure(session, erasure_id))


@router.get("/customers/{customer_id}/export", summary="Everything identity holds about the customer (SAR)")
def export_customer(customer_id: str, session: SessionDep, principal: PiiReader,
                    reason: Annotated[str | None, Query(max_length=1000)] = None) -> JSONResponse:
    customer, _ = _resolve(session, customer_id)
    body = privacy.export(session, customer=customer, actor=principal.name, reason=reason)
    session.commit()
    return JSONResponse(_jsonable(body), headers={
        "Content-Disposition": f'attachment; filename="{customer.id}-export.json"'})


@router.get("/audit", summary="The audit log: merges, unmerges, consents, erasures, exports, PII reads")
def get_audit(session: SessionDep, principal: PiiReader, customer_id: str | None = None,
              action: Annotated[str | None, Query(pattern="^(" + "|".join(audit.ACTIONS) + ")$")] = None,
              actor: str | None = None, cursor: str | None = None, limit: Limit = 50) -> dict:
    position = decode_cursor(cursor, expect={"id": int})
    conditions = []
    if customer_id:
        conditions.append(AuditEntry.customer_id == customer_id)
    if action:
        conditions.append(AuditEntry.action == action)
    if actor:
        conditions.append(AuditEntry.actor == actor)
    if position:
        conditions.append(AuditEntry.id < position["id"])
    rows = session.execute(select(AuditEntry).where(and_(True, *conditions)).order_by(AuditEntry.id.desc())
                           .limit(limit + 1)).scalars().all()
    next_cursor = encode_cursor({"id": rows[limit - 1].id}) if len(rows) > limit else None
    return {"items": [{"id": a.id, "at": _aware(a.at), "actor": a.actor, "action": a.action,
                       "customer_id": a.customer_id, "reason": a.reason, "detail": a.detail} for a in rows[:limit]],
            "next_cursor": next_cursor}


def _jsonable(value: Any) -> Any:
    from fastapi.encoders import jsonable_encoder

    return jsonable_encoder(value)


_ = (NotFound, Depends)
