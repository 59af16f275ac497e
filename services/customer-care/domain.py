"""Customer care's logic: opening cases from the zone stream, the case lifecycle,
responses (with crisis approval and advocate answers), CSAT, merges and erasure.

Every function takes a session and writes its state change and the events it
publishes in the caller's transaction; the caller commits (a request handler) or
the inbox wrapper does (a consumer).
"""

from __future__ import annotations

import re
import string
from datetime import datetime

from sqlalchemy import String, cast, func, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, delete, select

from socialzone_common import db
from socialzone_common.errors import Conflict, NotFound, ProblemError, Unprocessable
from socialzone_common.ids import uuid4_text
from socialzone_common.events.care import CaseOpened, CaseReopened, CaseResolved, CaseResponded, CsatRecorded
from socialzone_common.events.common import Interaction
from socialzone_common.events.privacy import CareErasureCompleted
from socialzone_care import routing, sla
from socialzone_care.common import activity, cached, digest, emit
from socialzone_care.common import invalidate as invalidate_config
from socialzone_care.models import (
    OPEN_STATUSES, AdvocateTopic, Agent, CannedResponse, Case, CaseActivity, CaseCreate, CaseMessage, CaseThread,
    Crisis, CustomerFacts, ErasedCustomer, Lead, OpeningRule, ResponseCreate,
)

PUBLIC_KINDS = {"post", "reply", "mention", "review", "comment"}
IDENTIFIER_HANDLES = {"email", "phone", "crm", "web_cookie"}


class Gone(ProblemError):
    status, title, slug = 410, "Gone", "gone"


DEFAULT_RULES = [
    OpeningRule(name="churn_risk", position=10, intents=["churn_risk"], topic="retention"),
    OpeningRule(name="billing", position=20, intents=["complaint", "question"],
                keywords=["invoice", "bill", "billing", "refund", "charge", "charged", "payment", "subscription"],
                topic="billing"),
    OpeningRule(name="delivery", position=30, intents=["complaint", "question"],
                keywords=["delivery", "shipping", "package", "parcel", "courier", "tracking", "arrived"],
                topic="delivery"),
    OpeningRule(name="complaint", position=40, intents=["complaint"], topic="general"),
    OpeningRule(name="question", position=50, intents=["question"], topic="how_to"),
]


def new_id() -> str:
    return uuid4_text()


# --- lookups -------------------------------------------------------------------------------

def get_case(session: Session, case_id: str, *, for_update: bool = False) -> Case:
    statement = select(Case).where(Case.id == case_id)
    if for_update:
        if session.get_bind().dialect.name == "postgresql":
            statement = statement.with_for_update()
        else:
            db.begin_writing(session)  # SQLite: the writer turn, before the read
    case = session.exec(statement).first()
    if case is None:
        raise NotFound(f"case {case_id!r} does not exist", errors=[{"field": "case_id", "message": "unknown case"}])
    return case


def rules(session: Session) -> list[OpeningRule]:
    def load():
        configured = list(session.exec(select(OpeningRule).order_by(OpeningRule.position, OpeningRule.name)))
        for row in configured:
            session.expunge(row)
        return configured or DEFAULT_RULES
    return cached(session, "rules", "", load)


def facts(session: Session, customer_id: str) -> CustomerFacts:
    row = session.get(CustomerFacts, customer_id)
    if row is None:
        row = CustomerFacts(customer_id=customer_id)
        session.add(row)
        sla.forget_facts(session)
    return row


def is_erased(session: Session, customer_id: str) -> bool:
    return session.get(ErasedCustomer, digest(customer_id)) is not None


# --- opening cases -------------------------------------------------------------------------

def _words(interaction: Interaction) -> set[str]:
    enrichment = interaction.enrichment
    words = set(re.findall(r"[\w']+", (interaction.text or "").lower()))
    words |= {k.lower() for k in enrichment.keywords}
    words |= {h.lower().lstrip("#") for h in enrichment.hashtags}
    return words


def match_rule(session: Session, interaction: Interaction) -> OpeningRule | None:
    intents = set(interaction.enrichment.intents)
    words: set[str] | None = None
    for rule in rules(session):
        if not rule.enabled:
            continue
        if rule.intents and not intents & set(rule.intents):
            continue
        if rule.channels and interaction.source not in rule.channels:
            continue
        if rule.keywords:
            words = _words(interaction) if words is None else words
            if not any(k.lower() in words for k in rule.keywords):
                continue
        return rule
    return None


def tracked_topics(topic: str, interaction: Interaction | None) -> list[str]:
    topics = [topic.lower()]
    if interaction is not None:
        e = interaction.enrichment
        topics += [f"brand:{b.name.lower()}" for b in e.brands]
        topics += [f"keyword:{k.lower()}" for k in e.keywords]
        topics += [f"hashtag:{h.lower().lstrip('#')}" for h in e.hashtags]
    return list(dict.fromkeys(topics))


def thread_keys(interaction: Interaction, customer_id: str) -> list[str]:
    """Keys that find the case an interaction continues: the message it replies to (any
    author: an advocate answering in the thread finds the case too), and the conversation
    (per customer: in a public thread, several customers may each have their own case).
    In that order, which decides when they lead to different cases: the message replied to
    is the more precise. Cut to the stored length."""
    keys = []
    if interaction.in_reply_to:
        keys.append(f"{interaction.source}:ext:{interaction.in_reply_to}"[:300])
    if interaction.conversation_id:
        keys.append(f"{interaction.source}:conv:{interaction.conversation_id}:{customer_id}"[:300])
    return keys


def _remember_thread(session: Session, case: Case, interaction: Interaction) -> None:
    keys = thread_keys(interaction, case.customer_id)
    if interaction.external_id:
        keys.append(f"{interaction.source}:ext:{interaction.external_id}")
    rows = [{"key": key[:300], "case_id": case.id} for key in dict.fromkeys(keys)]
    if rows:
        insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
        statement = insert(CaseThread).values(rows)
        session.execute(statement.on_conflict_do_update(index_elements=["key"],
                                                        set_={"case_id": statement.excluded.case_id}))


def choose_sla_policy(session: Session, customer_id: str, requested: str | None) -> str:
    if requested and sla.policy_exists(session, requested):
        return requested
    row = sla.customer_facts(session, customer_id)
    vip = (row is not None and row.advocate_tier in ("gold", "platinum")) or sla.open_deals(session, customer_id) > 0
    return "vip" if vip and sla.policy_exists(session, "vip") else "standard"


def open_case(session: Session, *, settings, now: datetime, customer_id: str, channel: str, topic: str,
              opened_from: str, intents: list[str], text: str | None = None, subject: str | None = None,
              language: str | None = None, public: bool = False, interaction: Interaction | None = None,
              rule: OpeningRule | None = None, queue: str | None = None, sla_policy: str | None = None,
              min_priority: int = 1) -> Case | None:
    """Open a case (and publish care.case.opened, then care.case.assigned when someone takes it).

    Returns None when the computed priority is below ``min_priority`` (a rule's threshold).
    """
    author = interaction.author if interaction else None
    handle = None
    if author is not None:
        first = author.identifiers[0]
        handle = None if first.type in IDENTIFIER_HANDLES else first.value
    sentiment = interaction.enrichment.sentiment if interaction else None
    case = Case(
        id=new_id(), customer_id=customer_id, status="open", topic=topic, channel=channel,
        language=language, intents=list(intents), tracked_topics=tracked_topics(topic, interaction),
        opened_from=opened_from, interaction_id=interaction.interaction_id if interaction else None,
        rule=rule.name if rule else None, public=public,
        subject=(subject or (text or "")[:200] or None),
        customer_name=author.display_name if author else None, customer_handle=handle,
        followers=author.followers if author else None,
        sentiment_score=sentiment.score if sentiment else None,
        queue=queue or (rule.queue if rule and rule.queue else None)
        or routing.queue_for(session, channel=channel, language=language, topic=topic),
        sla_policy=choose_sla_policy(session, customer_id, sla_policy or (rule.sla_policy if rule else None)),
        opened_at=now, updated_at=now,
    )
    sla.start(session, case, "first_response", now=now, warning_fraction=settings.sla_warning_fraction)
    sla.start(session, case, "resolution", now=now, warning_fraction=settings.sla_warning_fraction)
    sla.refresh_priority(session, case, weights=settings.priority_weights, now=now, reason="opened")
    if case.priority < min_priority:
        return None
    session.add(case)
    if text or interaction is not None:
        session.add(CaseMessage(
            id=new_id(), case_id=case.id, kind="customer", author_id=customer_id, author_kind="customer",
            public=public, state="received", text=text,
            interaction_id=interaction.interaction_id if interaction else None,
            external_id=interaction.external_id if interaction else None, created_at=now))
    if interaction is not None:
        _remember_thread(session, case, interaction)
    activity(session, case, "opened", now, opened_from=opened_from, rule=case.rule, priority=case.priority,
             queue=case.queue, sla_policy=case.sla_policy)
    emit(session, CaseOpened(
        case_id=case.id, customer_id=customer_id, opened_from=opened_from,
        interaction_id=case.interaction_id, channel=channel, topic=topic, intents=tuple(intents),
        priority=case.priority_label, queue=case.queue, sla_policy=case.sla_policy,
        first_response_due=case.first_response_due, resolution_due=case.resolution_due))
    if not offer_to_advocate(session, case, settings=settings, now=now):
        routing.route(session, case, now=now)
    session.add(case)
    return case


def open_manual_case(session: Session, *, body: CaseCreate, settings, now: datetime) -> Case:
    if is_erased(session, body.customer_id):
        raise Gone("this customer's data was erased: no new case can be opened for them",
                   errors=[{"field": "customer_id", "message": "customer erased"}])
    if body.queue is not None and not body.queue.strip():
        raise Unprocessable("queue: must not be blank", errors=[{"field": "queue", "message": "blank"}])
    if body.sla_policy is not None and not sla.policy_exists(session, body.sla_policy):
        raise Unprocessable(f"sla_policy: unknown policy {body.sla_policy!r}",
                            errors=[{"field": "sla_policy", "message": "unknown SLA policy"}])
    case = open_case(session, settings=settings, now=now, customer_id=body.customer_id, channel=body.channel,
                     topic=body.topic, opened_from="agent", intents=list(body.intents), text=body.text,
                     subject=body.subject, language=body.language, public=body.public, queue=body.queue,
                     sla_policy=body.sla_policy)
    assert case is not None
    return case


def offer_to_advocate(session: Session, case: Case, *, settings, now: datetime) -> bool:
    """A public how-to question goes first to an advocate with accepted answers on its topic."""
    if not case.public or "question" not in case.intents or {"complaint", "churn_risk"} & set(case.intents):
        return False
    candidates = session.exec(
        select(AdvocateTopic, CustomerFacts).join(CustomerFacts, CustomerFacts.customer_id == AdvocateTopic.advocate_id)
        .where(AdvocateTopic.topic == case.topic, AdvocateTopic.accepted_answers > 0,
               CustomerFacts.advocate_tier != "none", CustomerFacts.advocate_flagged == False,  # noqa: E712
               AdvocateTopic.advocate_id != case.customer_id)
        .order_by(col(AdvocateTopic.accepted_answers).desc(), AdvocateTopic.advocate_id)).all()
    if not candidates:
        return False
    expires = sla.advocate_offer_expiry(sla.case_calendar(session, case), case, now=now,
                                        offer_s=settings.advocate_offer_s,
                                        margin_s=settings.advocate_fallback_margin_s)
    if expires is None:
        return False
    advocate = candidates[0][0].advocate_id
    case.advocate_id, case.advocate_offer_expires_at = advocate, expires
    routing.assign(session, case, assignee_id=advocate, kind="advocate", rule="advocate_first_tier", now=now)
    sla.schedule(case, now)
    return True


def on_interaction(session: Session, *, customer_id: str, interaction: Interaction, settings,
                   now: datetime) -> str:
    """Handle one attributed interaction; returns what it did (for tests and metrics)."""
    if is_erased(session, customer_id):
        # The erasure comes on another topic, so an interaction attributed before it can
        # arrive after it: keep nothing of it (no case, message, thread key or value), as
        # POST /cases refuses a new case for them.
        return "ignored"
    if interaction.transaction is not None and interaction.transaction.amount is not None:
        row = facts(session, customer_id)
        amount = float(interaction.transaction.amount)
        if interaction.transaction.type == "order":
            row.lifetime_value += amount
            row.orders += 1
        elif interaction.transaction.type == "refund":
            row.lifetime_value -= amount
        session.flush()
        sla.refresh_cases(session, sla.open_cases_of(session, customer_id), weights=settings.priority_weights,
                          now=now, reason="customer value changed")

    keys = thread_keys(interaction, customer_id)
    if keys:
        threads = session.exec(select(CaseThread).where(col(CaseThread.key).in_(keys))).all()
        for thread in sorted(threads, key=lambda t: keys.index(t.key)):  # in the keys' order
            case = session.exec(select(Case).where(Case.id == thread.case_id)).first()
            if case is None or case.erased:
                continue
            if case.customer_id == customer_id:
                if case.status in OPEN_STATUSES:
                    attach(session, case, interaction, settings=settings, now=now)
                    return "attached"
                if case.resolved_at and (now - case.resolved_at).total_seconds() <= settings.reopen_window_s:
                    attach(session, case, interaction, settings=settings, now=now, count_awaiting=False)
                    reopen(session, case=case, by="customer", reason="customer replied", settings=settings,
                           now=now, interaction_id=interaction.interaction_id)
                    return "reopened"
            elif case.status in OPEN_STATUSES and _is_advocate_answer(session, case, customer_id):
                record_advocate_answer(session, case, advocate_id=customer_id, text=interaction.text,
                                       interaction=interaction, now=now)
                return "advocate_answer"

    rule = match_rule(session, interaction)
    if rule is None:
        return "ignored"
    existing = session.exec(select(Case).where(Case.customer_id == customer_id, Case.topic == rule.topic,
                                               col(Case.status).in_(OPEN_STATUSES))
                            .order_by(col(Case.number).desc())).first()
    if existing is not None:
        attach(session, existing, interaction, settings=settings, now=now)
        return "attached"
    language = interaction.enrichment.language or interaction.language
    case = open_case(session, settings=settings, now=now, customer_id=customer_id, channel=interaction.source,
                     topic=rule.topic, opened_from="interaction", intents=list(interaction.enrichment.intents),
                     text=interaction.text, language=language, public=interaction.kind in PUBLIC_KINDS,
                     interaction=interaction, rule=rule, min_priority=rule.min_priority)
    return "opened" if case is not None else "below_min_priority"


def _is_advocate_answer(session: Session, case: Case, author_id: str) -> bool:
    if case.assignee_kind == "advocate" and case.assignee_id == author_id:
        return True
    return is_advocate(session, author_id)


def is_advocate(session: Session, customer_id: str) -> bool:
    """An advocate per marketing's facts: a tier above none, not flagged."""
    row = session.get(CustomerFacts, customer_id)
    return row is not None and row.advocate_tier != "none" and not row.advocate_flagged


def attach(session: Session, case: Case, interaction: Interaction, *, settings, now: datetime,
           count_awaiting: bool = True) -> None:
    """A customer's follow-up joins the case; after a reply, the next-response clock starts."""
    session.add(CaseMessage(id=new_id(), case_id=case.id, kind="customer", author_id=case.customer_id,
                            author_kind="customer", public=interaction.kind in PUBLIC_KINDS, state="received",
                            text=interaction.text, interaction_id=interaction.interaction_id,
                            external_id=interaction.external_id, created_at=now))
    _remember_thread(session, case, interaction)
    for intent in interaction.enrichment.intents:
        if intent not in case.intents:
            case.intents = [*case.intents, intent]
    sentiment = interaction.enrichment.sentiment
    if sentiment is not None and sentiment.score is not None:
        case.sentiment_score = min(case.sentiment_score if case.sentiment_score is not None else 1.0,
                                   sentiment.score)
    if count_awaiting and case.awaiting_since is None:
        case.awaiting_since = now
        if case.first_responded_at is not None and "next_response" not in case.sla_clock:
            sla.start(session, case, "next_response", now=now, warning_fraction=settings.sla_warning_fraction)
    case.updated_at = now
    activity(session, case, "customer_message", now, interaction_id=interaction.interaction_id)
    sla.refresh_priority(session, case, weights=settings.priority_weights, now=now, reason="customer message")


# --- responses -----------------------------------------------------------------------------

_FIELD = re.compile(r"\{(\w+)\}")


def render_canned(session: Session, case: Case, name: str, variables: dict[str, str], agent: str) -> str:
    canned = session.get(CannedResponse, name)
    if canned is None:
        raise Unprocessable(f"canned: no canned response named {name!r}",
                            errors=[{"field": "canned", "message": "unknown canned response"}])
    values = {"customer_name": case.customer_name or "there", "case_number": str(case.number),
              "case_id": case.id, "topic": case.topic, "agent_name": agent, "queue": case.queue}
    values.update(variables)
    missing = sorted({m for m in _FIELD.findall(canned.body) if m not in values})
    if missing:
        raise Unprocessable(f"variables.{missing[0]}: the canned response needs it",
                            errors=[{"field": f"variables.{m}", "message": "missing variable"} for m in missing])
    return string.Formatter().vformat(canned.body, (), values)


def crisis_topics(session: Session, case: Case) -> list[str]:
    return [t for t, _ in sla.active_crises(session, case.tracked_topics)]


def _writable(case: Case) -> None:
    if case.erased:
        raise Gone("the customer of this case was erased: nothing can be sent to them",
                   errors=[{"field": "case_id", "message": "customer erased"}])


def respond(session: Session, *, case_id: str, body: ResponseCreate, principal: str, settings,
            now: datetime) -> CaseMessage:
    case = get_case(session, case_id, for_update=True)
    _writable(case)
    if case.status == "resolved":
        raise Conflict("the case is resolved: reopen it before responding",
                       errors=[{"field": "case_id", "message": "case resolved"}])
    if (body.text is None) == (body.canned is None):
        raise Unprocessable("text: give either text or canned",
                            errors=[{"field": "text", "message": "give either text or canned"}])
    author = body.author_id or principal
    text = body.text if body.text is not None else render_canned(session, case, body.canned, body.variables, author)
    if body.kind == "note":
        message = CaseMessage(id=new_id(), case_id=case.id, kind="note", author_id=author, author_kind="agent",
                              public=False, state="sent", text=text, created_at=now)
        session.add(message)
        activity(session, case, "note", now, author_id=author)
        return message
    if body.kind == "advocate":
        return _record_for_advocate(session, case, advocate_id=body.author_id, text=text, now=now)
    message = CaseMessage(id=new_id(), case_id=case.id, kind="reply", author_id=author, author_kind="agent",
                          public=body.public, state="sent", text=text, created_at=now)
    if body.public and _held(session, case, message, now=now):
        return message
    session.add(message)
    _send(session, case, message, settings=settings, now=now)
    return message


def _record_for_advocate(session: Session, case: Case, *, advocate_id: str | None, text: str,
                         now: datetime) -> CaseMessage:
    """An agent records an advocate's answer. Only for a customer who is an advocate: the
    answer is credited to them when accepted (marketing rewards it), and an agent must not
    be able to pass their own reply off as one. It is public and sent by care, so crisis
    mode holds it like any public reply."""
    if not advocate_id:
        raise Unprocessable("author_id: an advocate answer needs the advocate's customer id",
                            errors=[{"field": "author_id", "message": "required for kind advocate"}])
    if not is_advocate(session, advocate_id):
        raise Unprocessable(f"author_id: {advocate_id!r} is not an advocate",
                            errors=[{"field": "author_id",
                                     "message": "not an advocate (no advocate tier, or flagged)"}])
    message = _advocate_message(case, advocate_id=advocate_id, text=text, interaction=None, now=now)
    if _held(session, case, message, now=now):
        return message
    session.add(message)
    _advocate_answered(session, case, message, now=now)
    return message


def _held(session: Session, case: Case, message: CaseMessage, *, now: datetime) -> bool:
    """Crisis mode: a public message care sends on a case with an active crisis on one of
    its topics waits for a lead's approval (nothing is published). True when held."""
    crises = crisis_topics(session, case)
    if not crises:
        return False
    message.state = "pending_approval"
    session.add(message)
    activity(session, case, "awaiting_approval", now, response_id=message.id, crisis_topics=crises)
    return True


def _send(session: Session, case: Case, message: CaseMessage, *, settings, now: datetime) -> None:
    first = case.first_responded_at is None
    case.responses += 1
    case.first_responded_at = case.first_responded_at or now
    case.awaiting_since = None
    sla.stop(case, "first_response", now=now)
    sla.stop(case, "next_response", now=now)
    if case.status in ("open", "assigned"):
        case.status = "responded"
    case.updated_at = now
    sla.refresh_priority(session, case, weights=settings.priority_weights, now=now, reason="responded")
    activity(session, case, "responded", now, response_id=message.id, public=message.public,
             first_response=first)
    emit(session, CaseResponded(
        case_id=case.id, customer_id=case.customer_id, response_id=message.id, responder_id=message.author_id,
        responder_kind="agent", channel=case.channel, public=message.public, first_response=first,
        seconds_since_opened=max(0, int((now - case.opened_at).total_seconds()))))


def get_message(session: Session, case: Case, response_id: str) -> CaseMessage:
    message = session.get(CaseMessage, response_id)
    if message is None or message.case_id != case.id:
        raise NotFound(f"case {case.id} has no response {response_id!r}",
                       errors=[{"field": "response_id", "message": "unknown response"}])
    return message


def decide_approval(session: Session, *, case_id: str, response_id: str, approve: bool, lead: str, settings,
                    now: datetime) -> CaseMessage:
    case = get_case(session, case_id, for_update=True)
    _writable(case)
    message = get_message(session, case, response_id)
    if message.state != "pending_approval":
        raise Conflict(f"response {response_id} is {message.state}, not awaiting approval",
                       errors=[{"field": "response_id", "message": f"state is {message.state}"}])
    if approve and case.status == "resolved":
        raise Conflict("the case is resolved: reopen it before sending",
                       errors=[{"field": "case_id", "message": "case resolved"}])
    message.approved_by = lead
    message.state = "sent" if approve else "rejected"
    session.add(message)
    activity(session, case, "approved" if approve else "rejected", now, response_id=message.id, lead=lead)
    if approve and message.kind == "advocate":
        _advocate_answered(session, case, message, now=now)
    elif approve:
        _send(session, case, message, settings=settings, now=now)
    return message


def record_advocate_answer(session: Session, case: Case, *, advocate_id: str, text: str | None,
                           interaction: Interaction | None, now: datetime) -> CaseMessage:
    """The advocate answered on the network themselves (no crisis gate: care sent nothing)."""
    message = _advocate_message(case, advocate_id=advocate_id, text=text, interaction=interaction, now=now)
    session.add(message)
    _advocate_answered(session, case, message, now=now)
    return message


def _advocate_message(case: Case, *, advocate_id: str, text: str | None, interaction: Interaction | None,
                      now: datetime) -> CaseMessage:
    return CaseMessage(id=new_id(), case_id=case.id, kind="advocate", author_id=advocate_id,
                       author_kind="advocate", public=True, state="sent", text=text,
                       interaction_id=interaction.interaction_id if interaction else None,
                       external_id=interaction.external_id if interaction else None, created_at=now)


def _advocate_answered(session: Session, case: Case, message: CaseMessage, *, now: datetime) -> None:
    advocate_id = message.author_id
    case.updated_at = now
    session.add(case)
    activity(session, case, "advocate_answer", now, response_id=message.id, advocate_id=advocate_id)
    emit(session, CaseResponded(
        case_id=case.id, customer_id=case.customer_id, response_id=message.id, responder_id=advocate_id,
        responder_kind="advocate", channel=case.channel, public=True, first_response=False,
        seconds_since_opened=max(0, int((now - case.opened_at).total_seconds()))))


def accept_answer(session: Session, *, case_id: str, response_id: str, settings, now: datetime) -> Case:
    """An advocate's answer solved it: resolve with resolved_by_advocate (marketing credits them)."""
    case = get_case(session, case_id, for_update=True)
    _writable(case)
    message = get_message(session, case, response_id)
    if message.kind != "advocate":
        raise Conflict("only an advocate's answer can be accepted",
                       errors=[{"field": "response_id", "message": f"a {message.kind} message"}])
    if message.state != "sent":  # held in crisis mode or rejected: the customer never saw it
        raise Conflict(f"response {response_id} is {message.state}, not sent",
                       errors=[{"field": "response_id", "message": f"state is {message.state}"}])
    if message.author_id is None:
        raise Conflict("the advocate's data was erased: the answer can no longer be credited",
                       errors=[{"field": "response_id", "message": "advocate erased"}])
    if case.status == "resolved":
        raise Conflict("the case is already resolved", errors=[{"field": "case_id", "message": "case resolved"}])
    message.accepted = True
    session.add(message)
    stat = session.exec(select(AdvocateTopic).where(AdvocateTopic.advocate_id == message.author_id,
                                                    AdvocateTopic.topic == case.topic)).first()
    if stat is None:
        stat = AdvocateTopic(advocate_id=message.author_id, topic=case.topic, accepted_answers=0)
    stat.accepted_answers += 1
    session.add(stat)
    return _resolve(session, case, resolution="answered_by_advocate", resolver_id=message.author_id,
                    advocate_id=message.author_id, settings=settings, now=now)


# --- lifecycle -----------------------------------------------------------------------------

def assign_case(session: Session, *, case_id: str, assignee_id: str | None, queue: str | None, settings,
                now: datetime) -> Case:
    case = get_case(session, case_id, for_update=True)
    _writable(case)
    if case.status == "resolved":
        raise Conflict("the case is resolved: reopen it before assigning it",
                       errors=[{"field": "case_id", "message": "case resolved"}])
    previous = case.assignee_id if case.assignee_kind == "agent" else None
    if assignee_id is None:
        if routing.route(session, case, now=now, queue=queue or case.queue, rule=None) is None:
            routing.assign(session, case, assignee_id=None, rule="manual", now=now, queue=queue or case.queue)
    else:
        agent = session.get(Agent, assignee_id)
        if agent is None or not agent.active:
            raise Unprocessable(f"assignee_id: no active agent {assignee_id!r}",
                                errors=[{"field": "assignee_id", "message": "unknown or inactive agent"}])
        case.advocate_offer_expires_at = None
        routing.assign(session, case, assignee_id=agent.id, rule=None, now=now, queue=queue)
        sla.schedule(case, now)
    if previous is not None and previous != case.assignee_id:
        routing.free(session, previous, now=now)  # the previous agent's room goes to waiting cases
    return case


def resolve(session: Session, *, case_id: str, resolution: str, resolver_id: str | None, settings,
            now: datetime) -> Case:
    case = get_case(session, case_id, for_update=True)
    _writable(case)
    if case.status == "resolved":
        raise Conflict("the case is already resolved", errors=[{"field": "case_id", "message": "case resolved"}])
    return _resolve(session, case, resolution=resolution, resolver_id=resolver_id, advocate_id=None,
                    settings=settings, now=now)


def _resolve(session: Session, case: Case, *, resolution: str, resolver_id: str | None, advocate_id: str | None,
             settings, now: datetime) -> Case:
    freed = case.assignee_id if case.assignee_kind == "agent" else None
    case.status, case.resolved_at, case.resolution = "resolved", now, resolution
    case.resolver_id, case.resolved_by_advocate = resolver_id, advocate_id is not None
    if advocate_id:
        case.advocate_id = advocate_id
    case.advocate_offer_expires_at = None
    case.awaiting_since = None
    sla.stop_all(case)
    case.updated_at = now
    session.add(case)
    activity(session, case, "resolved", now, resolution=resolution, resolver_id=resolver_id,
             resolved_by_advocate=advocate_id is not None)
    emit(session, CaseResolved(
        case_id=case.id, customer_id=case.customer_id, resolution=resolution, resolver_id=resolver_id,
        resolved_by_advocate=advocate_id is not None, advocate_id=advocate_id, responses=case.responses,
        seconds_to_resolve=max(0, int((now - case.opened_at).total_seconds()))))
    routing.free(session, freed, now=now)
    return case


def reopen(session: Session, *, case_id: str | None = None, case: Case | None = None, by: str = "agent",
           reason: str | None, settings, now: datetime, interaction_id: str | None = None) -> Case:
    case = case or get_case(session, case_id, for_update=True)
    _writable(case)
    if case.status != "resolved":
        raise Conflict(f"only a resolved case can be reopened; this one is {case.status}",
                       errors=[{"field": "case_id", "message": f"case {case.status}"}])
    case.status, case.reopen_count = "open", case.reopen_count + 1
    case.resolved_at = case.resolution = case.resolver_id = None
    case.resolved_by_advocate = False
    case.assignee_id = case.assignee_kind = None
    case.escalated = False
    case.awaiting_since = now if by == "customer" else None
    case.updated_at = now
    sla.start(session, case, "resolution", now=now, warning_fraction=settings.sla_warning_fraction)
    if case.first_responded_at is None:
        sla.start(session, case, "first_response", now=now, warning_fraction=settings.sla_warning_fraction)
    elif by == "customer":
        sla.start(session, case, "next_response", now=now, warning_fraction=settings.sla_warning_fraction)
    sla.refresh_priority(session, case, weights=settings.priority_weights, now=now, reason="reopened")
    session.add(case)
    activity(session, case, "reopened", now, reopened_by=by, reason=reason)
    emit(session, CaseReopened(case_id=case.id, customer_id=case.customer_id, reopened_by=by,
                               interaction_id=interaction_id, reason=reason))
    routing.route(session, case, now=now, prefer_last_agent=True)
    return case


def record_csat(session: Session, *, case_id: str, score: int, comment: str | None, channel: str,
                now: datetime) -> Case:
    case = get_case(session, case_id, for_update=True)
    _writable(case)
    if case.resolved_at is None and case.status != "resolved":
        raise Conflict("CSAT is recorded for resolved cases only",
                       errors=[{"field": "case_id", "message": f"case {case.status}"}])
    if case.csat_score is not None:
        raise Conflict("this case already has a CSAT answer", errors=[{"field": "score", "message": "already rated"}])
    case.csat_score, case.csat_comment, case.updated_at = score, comment, now
    session.add(case)
    activity(session, case, "csat", now, score=score)
    emit(session, CsatRecorded(case_id=case.id, customer_id=case.customer_id, score=score, channel=channel,
                               assignee_id=case.last_agent_id or case.assignee_id,
                               resolved_by_advocate=case.resolved_by_advocate))
    return case


# --- other departments' facts ---------------------------------------------------------------

def on_tier_changed(session: Session, *, customer_id: str, tier: str, settings, now: datetime) -> None:
    facts(session, customer_id).advocate_tier = tier
    session.flush()
    sla.refresh_cases(session, sla.open_cases_of(session, customer_id), weights=settings.priority_weights, now=now,
                      reason=f"advocate tier {tier}")


def on_advocate_flagged(session: Session, *, customer_id: str) -> None:
    facts(session, customer_id).advocate_flagged = True


def on_lead(session: Session, *, lead_id: str, customer_id: str, stage: str, settings, now: datetime) -> None:
    row = session.get(Lead, lead_id)
    if row is None:
        row = Lead(lead_id=lead_id, customer_id=customer_id, stage=stage)
    row.stage, row.customer_id = stage, customer_id
    session.add(row)
    session.flush()
    sla.forget_deals(session)
    sla.refresh_cases(session, sla.open_cases_of(session, customer_id), weights=settings.priority_weights, now=now,
                      reason=f"sales lead {stage}")


def on_deal_closed(session: Session, *, lead_id: str | None, deal_id: str, customer_id: str, won: bool, settings,
                   now: datetime) -> None:
    key = lead_id or f"deal:{deal_id}"
    on_lead(session, lead_id=key, customer_id=customer_id, stage="won" if won else "lost", settings=settings,
            now=now)


def on_alert(session: Session, *, alert_id: str, topic: str, kind: str, severity: str | None, raised: bool,
             settings, now: datetime, raised_at: datetime | None = None) -> None:
    if kind != "crisis":
        return
    row = session.get(Crisis, alert_id)
    if raised:
        if row is None:
            row = Crisis(alert_id=alert_id, topic=topic.lower(), severity=severity or "warning",
                         raised_at=raised_at or now)
        row.active, row.severity = True, severity or row.severity
    else:
        if row is None:
            return
        row.active, row.resolved_at = False, now
    session.add(row)
    session.flush()
    invalidate_config()
    sla.refresh_cases(session, sla.open_cases_on_topic(session, topic), weights=settings.priority_weights, now=now,
                      reason=f"crisis on {topic} {'raised' if raised else 'resolved'}")


def on_merged(session: Session, *, survivor_id: str, merged_id: str, settings, now: datetime) -> int:
    moved = session.exec(select(Case).where(Case.customer_id == merged_id)).all()
    for case in moved:
        case.customer_id, case.merged_from = survivor_id, merged_id
        activity(session, case, "customer_merged", now, survivor_id=survivor_id, merged_id=merged_id)
        session.add(case)
    gone = session.get(CustomerFacts, merged_id)
    if gone is not None:
        keep = facts(session, survivor_id)
        keep.lifetime_value += gone.lifetime_value
        keep.orders += gone.orders
        order = ["none", "bronze", "silver", "gold", "platinum"]
        keep.advocate_tier = max(keep.advocate_tier, gone.advocate_tier, key=order.index)
        keep.advocate_flagged = keep.advocate_flagged or gone.advocate_flagged
        session.delete(gone)
    session.exec(update(Lead).where(Lead.customer_id == merged_id).values(customer_id=survivor_id))
    session.flush()
    sla.forget_deals(session)
    sla.refresh_cases(session, sla.open_cases_of(session, survivor_id), weights=settings.priority_weights, now=now,
                      reason="customers merged")
    return len(moved)


def on_unmerged(session: Session, *, customer_id: str, restored_id: str, settings, now: datetime) -> int:
    moved = session.exec(select(Case).where(Case.customer_id == customer_id, Case.merged_from == restored_id)).all()
    for case in moved:
        # merged_from holds only the latest merge; after A into B into C, A's case must
        # remember A once it is back with B, so the next unmerge (B -> A) finds it
        case.customer_id, case.merged_from = restored_id, _earlier_origin(session, case)
        activity(session, case, "customer_unmerged", now, restored_customer_id=restored_id, from_id=customer_id)
        session.add(case)
    return len(moved)


def _earlier_origin(session: Session, case: Case) -> str | None:
    """The customer the case came from in the merge before its latest one, from its
    history: each merge pushes the merged id, each unmerge pops one."""
    entries = session.exec(select(CaseActivity.kind, CaseActivity.detail).where(
        CaseActivity.case_id == case.id, col(CaseActivity.kind).in_(("customer_merged", "customer_unmerged")))
        .order_by(col(CaseActivity.id))).all()
    origins: list[str] = []
    for kind, detail in entries:
        if kind == "customer_merged":
            origins.append(detail.get("merged_id"))
        elif origins:
            origins.pop()
    return origins[-2] if len(origins) >= 2 else None


def erase(session: Session, *, erasure_id: str, customer_id: str, merged_ids: tuple[str, ...] = (),
          now: datetime) -> int:
    """Purge a customer's personal data; cases stay as anonymous counts for KPIs."""
    ids = [customer_id, *merged_ids]
    purged = 0
    cases = session.exec(select(Case).where(or_(col(Case.customer_id).in_(ids),
                                                col(Case.merged_from).in_(ids)))).all()
    freed: list[str] = []
    for case in cases:
        anonymous = "erased:" + digest(case.customer_id)[:24]
        case.customer_id, case.merged_from = anonymous, None
        case.subject = case.customer_name = case.customer_handle = case.csat_comment = None
        case.followers, case.interaction_id, case.erased = None, None, True
        case.advocate_offer_expires_at = None
        case.priority_factors = _anonymous_factors(case.priority_factors)
        closing = case.status in OPEN_STATUSES
        if closing and case.assignee_kind == "agent" and case.assignee_id not in freed:
            freed.append(case.assignee_id)
        if closing:
            _close_erased(case, now=now)
        sla.stop_all(case)
        session.add(case)
        purged += 1
        messages = session.exec(select(CaseMessage).where(CaseMessage.case_id == case.id)).all()
        for message in messages:
            message.text = None
            message.external_id = message.interaction_id = None
            if message.author_kind == "customer":
                message.author_id = None
            session.add(message)
            purged += 1
        purged += session.exec(delete(CaseThread).where(CaseThread.case_id == case.id)).rowcount or 0
        session.exec(update(CaseActivity).where(CaseActivity.case_id == case.id).values(detail={}))
        activity(session, case, "erased", now, erasure_id=erasure_id)
        if closing:
            activity(session, case, "resolved", now, resolution=ERASED_RESOLUTION, resolver_id=None,
                     resolved_by_advocate=False)
            emit(session, CaseResolved(
                case_id=case.id, customer_id=case.customer_id, resolution=ERASED_RESOLUTION, resolver_id=None,
                resolved_by_advocate=False, advocate_id=None, responses=case.responses,
                seconds_to_resolve=max(0, int((now - case.opened_at).total_seconds()))))
    # The customer's own messages as an advocate on other customers' cases.
    for message in session.exec(select(CaseMessage).where(col(CaseMessage.author_id).in_(ids))).all():
        message.text, message.author_id, message.external_id, message.interaction_id = None, None, None, None
        if message.state == "pending_approval":  # held in a crisis: there is nothing left to publish
            message.state = "rejected"
        session.add(message)
        purged += 1
    for model, column in ((CustomerFacts, CustomerFacts.customer_id), (Lead, Lead.customer_id),
                          (AdvocateTopic, AdvocateTopic.advocate_id)):
        purged += session.exec(delete(model).where(col(column).in_(ids))).rowcount or 0
    # The customer as an advocate on other customers' cases: the offer, the credit, the history.
    offered = []
    named = session.exec(select(Case).where(or_(col(Case.advocate_id).in_(ids), col(Case.resolver_id).in_(ids),
                                                col(Case.assignee_id).in_(ids)))).all()
    for case in named:
        if case.advocate_id in ids:
            case.advocate_id = None
        if case.resolver_id in ids:
            case.resolver_id = None
        if case.assignee_kind == "advocate" and case.assignee_id in ids:
            case.assignee_id = case.assignee_kind = None
            case.advocate_offer_expires_at = None
            if case.status == "assigned":
                case.status = "open"
            if case.status in OPEN_STATUSES:
                offered.append(case)
        session.add(case)
    purged += _scrub_history(session, ids)
    for cid in ids:
        key = digest(cid)
        if session.get(ErasedCustomer, key) is None:
            session.add(ErasedCustomer(digest=key, erasure_id=erasure_id, erased_at=now,
                                       cases=len([c for c in cases]), records_purged=purged))
    emit(session, CareErasureCompleted(erasure_id=erasure_id, customer_id=customer_id, completed_at=now,
                                       records_purged=purged))
    # The erased customer's closed cases free their agents; the questions offered to an
    # erased advocate go to the agents of their queues (as when an offer runs out).
    session.flush()
    for case in offered:
        routing.route(session, case, now=now, rule="advocate_fallback")
        sla.schedule(case, now)
        session.add(case)
    for agent_id in freed:
        routing.free(session, agent_id, now=now)
    return purged


ERASED_RESOLUTION = "customer_erased"
# Factors whose value or explanation describe the person (followers, lifetime value, tier,
# deals, their tone): an erased case keeps the points (its priority stays), not those.
PERSONAL_FACTORS = frozenset({"reach", "customer_value", "advocate_tier", "open_deals", "sentiment"})


def _anonymous_factors(factors: list) -> list:
    return [{**f, "value": None, "explanation": "erased"} if f.get("name") in PERSONAL_FACTORS else f
            for f in factors]


def _close_erased(case: Case, *, now: datetime) -> None:
    """An erased customer's open case can never be answered (every write is a 410): resolve
    it, so it stops holding its agent's capacity and stays in the KPIs as resolved."""
    case.status, case.resolved_at, case.resolution = "resolved", now, ERASED_RESOLUTION
    case.resolver_id, case.resolved_by_advocate = None, False
    case.assignee_id = case.assignee_kind = None
    case.awaiting_since = None
    case.updated_at = now


def _scrub_history(session: Session, ids: list[str]) -> int:
    """Remove the erased ids from other cases' history (assigned to an advocate, their
    answer, a resolve credited to them): the entries stay, without the name."""
    erased = set(ids)
    scrubbed = 0
    for cid in ids:
        needle = '%"' + cid.replace('"', "") + '"%'
        rows = session.exec(select(CaseActivity).where(cast(CaseActivity.detail, String).like(needle))).all()
        for row in rows:
            detail = {k: (None if isinstance(v, str) and v in erased else v) for k, v in row.detail.items()}
            if detail != row.detail:
                row.detail = detail
                session.add(row)
                scrubbed += 1
    return scrubbed


def stats(session: Session) -> dict:
    by_status = dict(session.exec(select(Case.status, func.count()).group_by(Case.status)).all())
    by_topic = dict(session.exec(select(Case.topic, func.count()).group_by(Case.topic)).all())
    erased = session.exec(select(func.count()).select_from(Case).where(Case.erased == True)).one()  # noqa: E712
    by_advocate = session.exec(select(func.count()).select_from(Case).where(
        Case.resolved_by_advocate == True)).one()  # noqa: E712
    csat = session.exec(select(func.avg(Case.csat_score), func.count(Case.csat_score))).one()
    return {"cases": sum(by_status.values()), "by_status": by_status, "by_topic": by_topic,
            "erased_cases": erased, "resolved_by_advocate": by_advocate,
            "csat_average": round(float(csat[0]), 2) if csat[0] is not None else None, "csat_answers": csat[1]}
