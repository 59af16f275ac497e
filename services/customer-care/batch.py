"""Attributed interactions a polled batch at a time: the same decisions as
:func:`domain.on_interaction`, with the reads done up front and the writes in bulk.

The consumer's batch handler runs here, in ONE transaction per polled batch (the
platform claims the inbox rows in bulk and, if this raises, rolls back and handles
the batch one event per transaction with the per-event handler: the reference).

- **Reads**: for the batch's customers, one query each for their open cases, the
  thread keys the interactions continue (and those cases), their replicated facts
  (value, advocate tier), open deals and erasures; agents with their load, the queue rows
  and round-robin pointers when the first case needs routing; advocates per topic when a question may be
  offered. Rules, queues' configuration, members, SLA policies, calendars and crises
  come from the per-process configuration cache, as on the per-event path.
- **Decisions** in Python on :class:`CaseState` objects (a row of ``care_cases``
  with the ORM model's attribute names, so the pure parts of ``sla``, ``priority``
  and ``routing`` work on them unchanged), in event order: two messages of one
  customer in one batch thread into one case as they would one after the other.
- **Writes** at the end: new cases, changed columns of existing cases, messages, thread
  keys, history and round-robin pointers (an upsert) as driver-level multi-row statements
  of tuples (:class:`Writer`: each value through its column type's bind processor, as Core
  would); facts and agents' state with Core; the outbox events in order, written as the bytes
  ``to_structured(payload.to_envelope(...))`` would give (``outbox.structured_row``,
  ``outbox.enqueue_structured``).
- **Configuration** (rules, SLA policies and calendars, queues and members, crises) is
  asked once per batch (:class:`BatchConfig`).
- **Rare branches go through the per-event code**: a customer's reply that reopens a
  resolved case and an advocate answering in a thread are handled by
  :func:`domain.on_interaction` itself in the same transaction. The batch writes what
  it has first and reads the database again afterwards, so the order of effects is
  the order of events.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import DateTime, bindparam, func, insert, select, update
from sqlmodel import Session

from socialzone_common import db, outbox, telemetry
from socialzone_common.envelope import now_utc
from socialzone_common.events.care import CaseAssigned, CaseOpened
from socialzone_common.events.common import Interaction
from socialzone_care import priority as scoring
from socialzone_care import routing, sla
from socialzone_care.domain import (
    IDENTIFIER_HANDLES, PUBLIC_KINDS, _words, new_id, rules, thread_keys, tracked_topics,
)
from socialzone_care.common import SOURCE, digest
from socialzone_care.models import (
    OPEN_STATUSES, AdvocateTopic, Agent, Case, CaseActivity, CaseMessage, CaseThread, CustomerFacts,
    ErasedCustomer, Lead, OpeningRule, Queue, RoundRobin,
)

CASES = Case.__table__
CASE_COLUMNS = tuple(c.name for c in CASES.columns)
INSERT_COLUMNS = tuple(c for c in CASE_COLUMNS if c != "number")
MESSAGE_COLUMNS = tuple(c.name for c in CaseMessage.__table__.columns)
ACTIVITY_COLUMNS = ("case_id", "at", "kind", "detail")
assert MESSAGE_COLUMNS == ("id", "case_id", "kind", "author_id", "author_kind", "public", "state", "text",
                           "interaction_id", "external_id", "accepted", "approved_by", "created_at")
assert set(ACTIVITY_COLUMNS) == {c.name for c in CaseActivity.__table__.columns} - {"id"}
SLOW = "slow"
OPENED, ASSIGNED = CaseOpened.event_type, CaseAssigned.event_type
_UTC = timezone.utc


# --- events as the outbox stores them --------------------------------------------------------

def opened_data(case) -> dict:
    """``CaseOpened(...).model_dump(mode="json")`` for a case opened from an interaction."""
    return {"case_id": case.id, "customer_id": case.customer_id, "opened_from": case.opened_from,
            "interaction_id": case.interaction_id, "channel": case.channel, "topic": case.topic,
            "intents": list(case.intents), "priority": case.priority_label, "queue": case.queue,
            "sla_policy": case.sla_policy, "first_response_due": case.first_response_due,
            "resolution_due": case.resolution_due}


def assigned_data(case, *, assignee_id: str, kind: str, previous: str | None, rule: str | None) -> dict:
    """``CaseAssigned(...).model_dump(mode="json")``."""
    return {"case_id": case.id, "customer_id": case.customer_id, "queue": case.queue, "assignee_id": assignee_id,
            "assignee_kind": kind, "previous_assignee_id": previous, "rule": rule}


# --- writes at driver level ---------------------------------------------------------------------

class Writer:
    """Driver-level multi-row statements of plain tuples on the session's connection: SQLAlchemy's
    statement handling and per-row parameter processing cost more than the writes. Each
    value goes through its column type's bind processor for the dialect, as a Core
    statement would do (JSON through the engine's serializer; SQLite's text datetimes,
    each distinct one formatted once); PostgreSQL finds the tables through the schema's
    search_path (as the inbox and outbox do)."""

    def __init__(self, conn) -> None:
        self.conn = conn
        self.dialect = dialect = conn.dialect
        self.mark = db.param_mark(dialect)
        self.quote = dialect.identifier_preparer.quote

    def _rows(self, table, columns, rows) -> list:
        return db.bind_rows(rows, db.bind_processors(self.dialect, table, columns))

    def insert(self, table, columns, rows, *, suffix: str = "") -> None:
        """Multi-row statements (``db.insert_rows``); ``suffix`` (an ``ON CONFLICT``) ends each."""
        quote = self.quote
        db.insert_rows(self.conn, f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) VALUES",
                       f"({', '.join(self.mark for _ in columns)})", self._rows(table, columns, rows), suffix)

    def update(self, table, columns, key: str, rows) -> None:
        """``UPDATE table SET columns WHERE key = ...`` for each row (the values, then the key),
        as ``db.update_rows`` statements. PostgreSQL types a VALUES list by its values, so
        each is cast to its column's type there."""
        quote = self.quote
        names = (key, *columns)
        if self.dialect.name == "postgresql":
            row = ", ".join(f"CAST({self.mark} AS {table.c[c].type.compile(self.dialect)})" for c in names)
        else:
            row = ", ".join(self.mark for _ in names)
        assignments = ", ".join(f"{quote(c)} = v.column{n}" for n, c in enumerate(columns, start=2))
        db.update_rows(self.conn, quote(table.name), assignments, quote(key), f"({row})",
                       [(r[-1], *r[:-1]) for r in self._rows(table, (*columns, key), rows)])


# --- configuration, read once per batch ----------------------------------------------------------

class _CompiledRule:
    __slots__ = ("rule", "intents", "channels", "keywords")

    def __init__(self, rule: OpeningRule) -> None:
        self.rule = rule
        self.intents = frozenset(rule.intents) if rule.intents else None
        self.channels = rule.channels or None
        self.keywords = [k.lower() for k in rule.keywords] if rule.keywords else None


class BatchConfig:
    """What the per-event path asks the configuration cache for on every case (rules,
    SLA policies and calendars, queues and their members, active crises, the queue a
    channel/language/topic goes to), asked once per batch: it does not change between
    the events of one transaction."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.rules = [_CompiledRule(r) for r in rules(session) if r.enabled]
        self._policies: dict[str, object] = {}
        self._calendars: dict[str, object] = {}
        self._crises: dict[tuple, tuple] = {}
        self._queue_for: dict[tuple, str] = {}
        self._members: dict[str, list[str]] = {}
        self._queues = None

    def match_rule(self, interaction: Interaction) -> OpeningRule | None:
        """domain.match_rule."""
        intents = interaction.enrichment.intents
        words: set[str] | None = None
        for compiled in self.rules:
            if compiled.intents is not None and compiled.intents.isdisjoint(intents):
                continue
            if compiled.channels is not None and interaction.source not in compiled.channels:
                continue
            if compiled.keywords is not None:
                words = _words(interaction) if words is None else words
                if not any(k in words for k in compiled.keywords):
                    continue
            return compiled.rule
        return None

    def policy(self, name: str):
        if name not in self._policies:
            self._policies[name] = sla.policy(self.session, name)
        return self._policies[name]

    def calendar(self, name: str):
        found = self._calendars.get(name)
        if found is None:
            found = self._calendars[name] = sla.calendar(self.session, name)
        return found

    def policy_and_calendar(self, name: str):
        pol = self.policy(name) or sla.DEFAULT_POLICIES["standard"]
        return pol, self.calendar(pol.calendar)

    def crises(self, topics: list[str]) -> tuple:
        key = tuple(topics)
        found = self._crises.get(key)
        if found is None:
            found = self._crises[key] = tuple(sla.active_crises(self.session, topics))
        return found

    def queue_for(self, *, channel: str, language: str | None, topic: str) -> str:
        key = (channel, language, topic)
        found = self._queue_for.get(key)
        if found is None:
            found = self._queue_for[key] = routing.queue_for(self.session, channel=channel, language=language,
                                                             topic=topic)
        return found

    def queues(self) -> dict:
        if self._queues is None:
            self._queues = routing.queues(self.session)
        return self._queues

    def members(self, queue_name: str) -> list[str]:
        found = self._members.get(queue_name)
        if found is None:
            found = self._members[queue_name] = routing.members(self.session, queue_name)
        return found


def _aware(value):
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def _row(mapping) -> dict:
    """A Core row as a dict, datetimes in UTC (SQLite hands them back naive; the ORM models
    say so on load, see models._utc_on_load)."""
    return {key: _aware(value) for key, value in mapping.items()}


_CASE_TIMES = frozenset(c.name for c in CASES.columns if isinstance(c.type, DateTime))


def _case_rows(result):
    """The rows of a ``SELECT care_cases.*`` as dicts, as :func:`_row` makes them (the column
    names taken once, not per row through ``row._mapping``, which cost more than the rest)."""
    keys = tuple(result.keys())
    times = [i for i, key in enumerate(keys) if key in _CASE_TIMES]
    for row in result:
        values = list(row)
        for i in times:
            value = values[i]
            if value is not None and value.tzinfo is None:
                values[i] = value.replace(tzinfo=_UTC)
        yield dict(zip(keys, values))


class CaseState:
    """One case in memory: the columns of ``care_cases`` as attributes (like the ORM
    model), whether it is in the database (``_persisted``) and, for a case read from
    the database, the values it had (to write back only what changed)."""

    def __init__(self, values: dict, *, persisted: bool) -> None:
        self.__dict__.update(values)
        self._persisted = persisted
        self._loaded = dict(values) if persisted else None
        self._new = not persisted

    def changes(self) -> dict:
        now, loaded = self.__dict__, self._loaded
        return {c: now[c] for c in CASE_COLUMNS if now[c] != loaded[c]}


class Row:
    """An agent, queue or customer facts row in memory (attributes as on the ORM model)."""

    def __init__(self, values: dict) -> None:
        self.__dict__.update(values)


class InteractionBatch:
    """The care state one batch of attributed interactions reads and writes."""

    def __init__(self, session: Session, *, settings, items: list[tuple[str, Interaction, datetime]]) -> None:
        self.session, self.settings = session, settings
        self.postgres = session.get_bind().dialect.name == "postgresql"
        self.weights = settings.priority_weights
        self.config = BatchConfig(session)
        self.traceparent = telemetry.current_traceparent()
        # state read from the database (and changed in memory)
        self.cases: dict[str, CaseState] = {}
        self.open_cases: dict[str, list[CaseState]] = {}  # customer -> open cases, oldest first
        self.threads: dict[str, str] = {}
        self.facts: dict[str, Row | None] = {}
        self.deals: dict[str, int] = {}
        self.agents: dict[str, Row] | None = None  # read with the queues when a case is first routed
        self.queue_rows: dict[str, Row] = {}
        self.pointers: dict[str, str | None] = {}  # queue -> round-robin pointer (care_round_robin)
        self.loads: dict[str, int] = {}
        self.advocates: dict[str, list[str]] = {}
        # writes, in order
        self.new_cases: list[CaseState] = []
        self.messages: list[dict] = []
        self.thread_writes: dict[str, str] = {}
        self.history: list[tuple] = []
        self.outbox: list[tuple[str, str, str, str, bytes]] = []
        self._agents_of: dict[str, list[Row]] = {}
        self.new_facts: set[str] = set()
        self.changed_facts: set[str] = set()
        self.changed_agents: set[str] = set()
        self.changed_queues: set[str] = set()
        self.erased: set[str] = set()  # the batch's customers whose data was erased
        self._prefetch(items)

    # --- reads ---------------------------------------------------------------------------

    def _prefetch(self, items) -> None:
        conn = self.session.connection()
        customers = sorted({customer_id for customer_id, _, _ in items})
        if not customers:
            return
        statement = select(CASES).where(CASES.c.customer_id.in_(customers)).order_by(CASES.c.number)
        if self.postgres:
            # the cases this batch may change stay as read until it commits (an agent's
            # reply through the API waits for the batch instead of being overwritten)
            statement = statement.where(CASES.c.status.in_(OPEN_STATUSES)).with_for_update()
        # (On SQLite the status is checked here: without statistics, "customer IN (...) AND
        # status IN (...)" makes it walk the status index, i.e. every open case there is.)
        for values in _case_rows(conn.execute(statement)):
            if values["status"] in OPEN_STATUSES:
                case = self._remember(values)
                self.open_cases.setdefault(case.customer_id, []).append(case)
        keys = sorted({key for customer_id, interaction, _ in items
                       for key in _thread_keys(interaction, customer_id)})
        if keys:
            table = CaseThread.__table__
            for key, case_id in conn.execute(select(table.c.key, table.c.case_id).where(table.c.key.in_(keys))):
                self.threads[key] = case_id
            missing = sorted(set(self.threads.values()) - set(self.cases))
            if missing:
                for values in _case_rows(conn.execute(select(CASES).where(CASES.c.id.in_(missing)))):
                    self._remember(values)
        erasures = ErasedCustomer.__table__
        digests = {digest(c): c for c in customers}
        for (key,) in conn.execute(select(erasures.c.digest).where(erasures.c.digest.in_(sorted(digests)))):
            self.erased.add(digests[key])
        facts = CustomerFacts.__table__
        self.facts = dict.fromkeys(customers)
        for row in conn.execute(select(facts).where(facts.c.customer_id.in_(customers))):
            self.facts[row.customer_id] = Row(dict(row._mapping))
        leads = Lead.__table__
        self.deals = dict.fromkeys(customers, 0)
        for customer_id, count in conn.execute(
                select(leads.c.customer_id, func.count()).where(
                    leads.c.customer_id.in_(customers), leads.c.stage.not_in(sla.CLOSED_STAGES))
                .group_by(leads.c.customer_id)):
            self.deals[customer_id] = count

    def _remember(self, values: dict) -> CaseState:
        case = CaseState(values, persisted=True)
        self.cases[case.id] = case
        return case

    def _routing_state(self) -> None:
        if self.agents is not None:
            return
        conn = self.session.connection()
        agents = Agent.__table__
        self.agents = {row.id: Row(_row(row._mapping)) for row in conn.execute(select(agents).order_by(agents.c.id))}
        queues = Queue.__table__
        self.queue_rows = {row.name: Row(dict(row._mapping)) for row in conn.execute(select(queues))}
        pointers = RoundRobin.__table__
        self.pointers = {row.queue: row.last_agent_id for row in conn.execute(select(pointers))}
        self.loads = dict.fromkeys(self.agents, 0)
        if self.agents:
            for assignee, count in conn.execute(
                    select(CASES.c.assignee_id, func.count()).where(
                        CASES.c.assignee_id.in_(list(self.agents)), CASES.c.status.in_(OPEN_STATUSES))
                    .group_by(CASES.c.assignee_id)):
                self.loads[assignee] = count

    def _advocates_on(self, topic: str) -> list[str]:
        """Advocates with accepted answers on a topic, best first (as offer_to_advocate)."""
        if topic not in self.advocates:
            topics, facts = AdvocateTopic.__table__, CustomerFacts.__table__
            self.advocates[topic] = [row.advocate_id for row in self.session.connection().execute(
                select(topics.c.advocate_id).join(facts, facts.c.customer_id == topics.c.advocate_id)
                .where(topics.c.topic == topic, topics.c.accepted_answers > 0, facts.c.advocate_tier != "none",
                       facts.c.advocate_flagged == False)  # noqa: E712
                .order_by(topics.c.accepted_answers.desc(), topics.c.advocate_id))]
        return self.advocates[topic]

    # --- one interaction (domain.on_interaction) -------------------------------------------

    def handle(self, *, customer_id: str, interaction: Interaction, now: datetime) -> str:
        """What domain.on_interaction would do; ``SLOW`` (nothing done) when it must do it."""
        if customer_id in self.erased:
            return "ignored"  # domain.on_interaction: nothing is kept of an erased customer
        settings = self.settings
        target = None
        for key in _thread_keys(interaction, customer_id):  # in their order, as domain.on_interaction
            case = self.cases.get(self.threads.get(key, ""))
            if case is None or case.erased:
                continue
            if case.customer_id == customer_id:
                if case.status in OPEN_STATUSES:
                    target = case
                    break
                if case.resolved_at and (now - case.resolved_at).total_seconds() <= settings.reopen_window_s:
                    return SLOW  # a reopen: routing back to the last agent, its own events
            elif case.status in OPEN_STATUSES and self._is_advocate(case, customer_id):
                return SLOW  # an advocate's answer in the thread

        transaction = interaction.transaction
        if transaction is not None and transaction.amount is not None:
            self._transaction(customer_id, transaction, now)
        if target is not None:
            self.attach(target, interaction, now)
            return "attached"

        rule = self.config.match_rule(interaction)
        if rule is None:
            return "ignored"
        existing = next((c for c in reversed(self.open_cases.get(customer_id, ()))
                         if c.topic == rule.topic and c.status in OPEN_STATUSES), None)
        if existing is not None:
            self.attach(existing, interaction, now)
            return "attached"
        case = self.open_case(customer_id, interaction, rule, now)
        return "opened" if case is not None else "below_min_priority"

    def _is_advocate(self, case: CaseState, author_id: str) -> bool:
        if case.assignee_kind == "advocate" and case.assignee_id == author_id:
            return True
        row = self.facts.get(author_id)
        return row is not None and row.advocate_tier != "none" and not row.advocate_flagged

    def _transaction(self, customer_id: str, transaction, now: datetime) -> None:
        row = self.facts.get(customer_id)
        if row is None:
            row = self.facts[customer_id] = Row({"customer_id": customer_id, "lifetime_value": 0.0, "orders": 0,
                                                 "advocate_tier": "none", "advocate_flagged": False})
            self.new_facts.add(customer_id)
        amount = float(transaction.amount)
        if transaction.type == "order":
            row.lifetime_value += amount
            row.orders += 1
        elif transaction.type == "refund":
            row.lifetime_value -= amount
        self.changed_facts.add(customer_id)
        for case in self.open_cases.get(customer_id, ()):
            if case.status in OPEN_STATUSES:
                self.refresh_priority(case, now, reason="customer value changed")

    # --- cases -------------------------------------------------------------------------------

    def attach(self, case: CaseState, interaction: Interaction, now: datetime) -> None:
        """domain.attach (count_awaiting: the batch never reopens)."""
        self._message(new_id(), case.id, case.customer_id, interaction.kind in PUBLIC_KINDS, interaction, now)
        self._remember_thread(case, interaction)
        for intent in interaction.enrichment.intents:
            if intent not in case.intents:
                case.intents = [*case.intents, intent]
        sentiment = interaction.enrichment.sentiment
        if sentiment is not None and sentiment.score is not None:
            case.sentiment_score = min(case.sentiment_score if case.sentiment_score is not None else 1.0,
                                       sentiment.score)
        if case.awaiting_since is None:
            case.awaiting_since = now
            if case.first_responded_at is not None and "next_response" not in case.sla_clock:
                sla.start(self.session, case, "next_response", now=now,
                          warning_fraction=self.settings.sla_warning_fraction)
        case.updated_at = now
        self.activity(case, "customer_message", now, interaction_id=interaction.interaction_id)
        self.refresh_priority(case, now, reason="customer message")

    def open_case(self, customer_id: str, interaction: Interaction, rule: OpeningRule,
                  now: datetime) -> CaseState | None:
        """domain.open_case for an interaction that a rule opens."""
        author = interaction.author
        first = author.identifiers[0]
        handle = None if first.type in IDENTIFIER_HANDLES else first.value
        sentiment = interaction.enrichment.sentiment
        language = interaction.enrichment.language or interaction.language
        channel, topic, intents = interaction.source, rule.topic, list(interaction.enrichment.intents)
        public = interaction.kind in PUBLIC_KINDS
        values = dict.fromkeys(CASE_COLUMNS)
        values.update(
            id=new_id(), customer_id=customer_id, status="open", topic=topic, channel=channel, language=language,
            intents=list(intents), tracked_topics=tracked_topics(topic, interaction), opened_from="interaction",
            interaction_id=interaction.interaction_id, rule=rule.name, public=public,
            subject=(interaction.text or "")[:200] or None, customer_name=author.display_name,
            customer_handle=handle, followers=author.followers,
            sentiment_score=sentiment.score if sentiment else None,
            priority=50, priority_label="normal", priority_factors=[],
            queue=rule.queue or self.config.queue_for(channel=channel, language=language, topic=topic),
            sla_policy=self._sla_policy(customer_id, rule.sla_policy),
            sla_clock={}, sla_warnings=[], sla_breaches=[], escalated=False, opened_at=now, updated_at=now,
            responses=0, resolved_by_advocate=False, reopen_count=0, erased=False)
        case = CaseState(values, persisted=False)
        self._start_clocks(case, now)
        self.refresh_priority(case, now, reason="opened")
        if case.priority < rule.min_priority:
            return None
        case._persisted = True
        self.new_cases.append(case)
        self.cases[case.id] = case
        self.open_cases.setdefault(customer_id, []).append(case)
        self._message(new_id(), case.id, customer_id, public, interaction, now)
        self._remember_thread(case, interaction)
        self.activity(case, "opened", now, opened_from="interaction", rule=case.rule, priority=case.priority,
                      queue=case.queue, sla_policy=case.sla_policy)
        self.emit(OPENED, customer_id, opened_data(case))
        if not self._offer_to_advocate(case, now):
            self._route(case, now)
        return case

    def _message(self, message_id: str, case_id: str, author_id: str, public: bool, interaction: Interaction,
                 now: datetime) -> None:
        """A customer's message (the columns of care_case_messages, in order)."""
        self.messages.append((message_id, case_id, "customer", author_id, "customer", public, "received",
                              interaction.text, interaction.interaction_id, interaction.external_id, False, None,
                              now))

    def _start_clocks(self, case: CaseState, now: datetime) -> None:
        """sla.start of first_response, then resolution, on a new case: the same clock
        entries, due times and next check, worked out in one go."""
        pol, cal = self.config.policy_and_calendar(case.sla_policy)
        fraction = self.settings.sla_warning_fraction
        first, resolution = pol.first_response_s, pol.resolution_s
        times = cal.add_many(now, (first, first * 0.5, first * (1 - fraction),
                                   resolution, resolution * 0.5, resolution * (1 - fraction)))
        start, clock, pending = now.isoformat(), {}, []
        for metric, target, (due, half_at, warn_at) in (("first_response", first, times[:3]),
                                                        ("resolution", resolution, times[3:])):
            clock[metric] = {"start": start, "due": due.isoformat(), "target_s": target,
                             "half_at": half_at.isoformat(), "warn_at": warn_at.isoformat()}
            setattr(case, f"{metric}_due", due)
            pending += (due, warn_at, half_at) if half_at > now else (due, warn_at)
        case.sla_clock, case.sla_warnings, case.sla_breaches = clock, [], []
        case.sla_next_check = min(pending)

    def _sla_policy(self, customer_id: str, requested: str | None) -> str:
        """domain.choose_sla_policy."""
        if requested and self.config.policy(requested) is not None:
            return requested
        row = self.facts.get(customer_id)
        vip = (row is not None and row.advocate_tier in ("gold", "platinum")) or self.deals.get(customer_id, 0) > 0
        return "vip" if vip and self.config.policy("vip") is not None else "standard"

    def _remember_thread(self, case: CaseState, interaction: Interaction) -> None:
        keys = _thread_keys(interaction, case.customer_id)
        if interaction.external_id:
            keys.append(f"{interaction.source}:ext:{interaction.external_id}")
        for key in dict.fromkeys(keys):
            self.threads[key[:300]] = self.thread_writes[key[:300]] = case.id

    def refresh_priority(self, case: CaseState, now: datetime, *, reason: str) -> bool:
        """sla.refresh_priority with the batch's facts and deals."""
        facts = self.facts.get(case.customer_id)
        sla_used, sla_metric = self._used(case, now) if case.status in OPEN_STATUSES else (None, None)
        inputs = scoring.Inputs(
            intents=tuple(case.intents), sentiment_score=case.sentiment_score, followers=case.followers,
            lifetime_value=facts.lifetime_value if facts else 0.0,
            advocate_tier=facts.advocate_tier if facts else "none",
            open_deals=self.deals.get(case.customer_id, 0),
            crisis=self.config.crises(case.tracked_topics) if case.tracked_topics else (),
            sla_used=sla_used, sla_metric=sla_metric, escalated=case.escalated)
        value, name, factors = scoring.compute(inputs, self.weights)
        changed = value != case.priority
        if changed and case._persisted:
            self.activity(case, "priority_changed", now, previous=case.priority, priority=value, reason=reason)
        case.priority, case.priority_label, case.priority_factors = value, name, factors
        if changed:
            case.updated_at = now
        return changed

    def _used(self, case: CaseState, now: datetime) -> tuple[float | None, str | None]:
        """sla.used with the batch's policies and calendars."""
        return sla.used_on(self.config.policy_and_calendar(case.sla_policy)[1], case, now)

    # --- routing -------------------------------------------------------------------------------

    def _offer_to_advocate(self, case: CaseState, now: datetime) -> bool:
        """domain.offer_to_advocate."""
        if not case.public or "question" not in case.intents or {"complaint", "churn_risk"} & set(case.intents):
            return False
        candidates = [a for a in self._advocates_on(case.topic) if a != case.customer_id]
        if not candidates:
            return False
        settings = self.settings
        expires = sla.advocate_offer_expiry(self.config.policy_and_calendar(case.sla_policy)[1], case, now=now,
                                            offer_s=settings.advocate_offer_s,
                                            margin_s=settings.advocate_fallback_margin_s)
        if expires is None:
            return False
        case.advocate_id, case.advocate_offer_expires_at = candidates[0], expires
        self._assign(case, candidates[0], kind="advocate", rule="advocate_first_tier", now=now)
        sla.schedule(case, now)
        return True

    def _route(self, case: CaseState, now: datetime) -> None:
        """routing.route for a new case (its own queue, no last agent)."""
        self._routing_state()
        q = self.config.queues().get(case.queue)
        agent = self._pick_agent(case.queue, case)
        if agent is not None:
            self._assign(case, agent.id, kind="agent", rule=q.policy if q else "round_robin", now=now)

    def _pick_agent(self, queue_name: str, case: CaseState) -> Row | None:
        """routing.pick_agent on the batch's agents, loads and queue rows."""
        agents = self._agents_of.get(queue_name)
        if agents is None:  # the batch never changes who is active or in which queue
            ids = self.config.members(queue_name)
            wanted = set(ids)
            agents = self._agents_of[queue_name] = [
                a for a in self.agents.values() if a.id in wanted and a.active and queue_name in a.queues]
        if not agents:
            return None
        queue = self.queue_rows.get(queue_name)
        policy = queue.policy if queue else "round_robin"
        loads = self.loads
        can_take = routing.can_take_loaded
        if policy == "least_loaded":
            eligible = [a for a in agents if can_take(a, case, queue, loads.get(a.id, 0))]
            if not eligible:
                return None
            return min(eligible, key=lambda a: (loads.get(a.id, 0), a.last_assigned_at is not None,
                                                a.last_assigned_at or datetime.min, a.id))
        # round robin: the first eligible member after the last one assigned, else the first
        # eligible one (agents are in id order; eligibility is checked only as far as needed)
        last = self.pointers.get(queue_name)
        first = None
        for a in agents:
            if (last is None or a.id > last) or first is None:
                if can_take(a, case, queue, loads.get(a.id, 0)):
                    if last is None or a.id > last:
                        return a
                    first = a
        return first

    def _assign(self, case: CaseState, assignee_id: str, *, kind: str, rule: str, now: datetime) -> None:
        """routing.assign to someone (the batch only assigns new cases)."""
        previous = case.assignee_id
        case.assignee_id, case.assignee_kind = assignee_id, kind
        case.updated_at = now
        if case.status == "open":
            case.status = "assigned"
        if kind == "agent":
            case.last_agent_id = assignee_id
            agent = self.agents.get(assignee_id) if self.agents is not None else None
            if agent is not None:
                agent.last_assigned_at = now
                self.changed_agents.add(assignee_id)
            self.pointers[case.queue] = assignee_id  # routing.advance: every assignment to an agent
            self.changed_queues.add(case.queue)
        if self.agents is not None and assignee_id in self.loads:
            self.loads[assignee_id] += 1
        self.activity(case, "assigned", now, assignee_id=assignee_id, assignee_kind=kind, queue=case.queue,
                      rule=rule, previous_assignee_id=previous)
        self.emit(ASSIGNED, case.customer_id,
                  assigned_data(case, assignee_id=assignee_id, kind=kind, previous=previous, rule=rule))

    # --- writes ----------------------------------------------------------------------------

    def activity(self, case: CaseState, kind: str, now: datetime, **detail) -> None:
        self.history.append((case.id, now, kind, detail))

    def emit(self, event_type: str, customer_id: str, data: dict) -> None:
        """An event for the outbox, as outbox.enqueue_many would write ``payload.to_envelope(...)``
        (building and validating the pydantic payload and envelope cost more than the rest of
        opening a case in memory; tests/care/test_fast_paths.py checks the bytes)."""
        self.outbox.append(outbox.structured_row(event_type, source=SOURCE, subject=customer_id, data=data,
                                                 time=now_utc(), traceparent=self.traceparent))

    def flush(self) -> None:
        """Write what the batch decided, in bulk, in the session's transaction."""
        conn = self.session.connection()
        writer = Writer(conn)
        if self.new_cases:
            writer.insert(CASES, INSERT_COLUMNS, [[vars(case)[c] for c in INSERT_COLUMNS]
                                                  for case in self.new_cases])
        by_columns: dict[tuple[str, ...], list[list]] = {}
        for case in self.cases.values():
            if case._new:
                continue
            changes = case.changes()
            if changes:
                columns = tuple(sorted(changes))
                by_columns.setdefault(columns, []).append([changes[c] for c in columns] + [case.id])
        for columns, rows in by_columns.items():
            writer.update(CASES, columns, "id", rows)
        if self.messages:
            writer.insert(CaseMessage.__table__, MESSAGE_COLUMNS, self.messages)
        if self.thread_writes:
            writer.insert(CaseThread.__table__, ("key", "case_id"), list(self.thread_writes.items()),
                          suffix=f" ON CONFLICT ({writer.quote('key')}) DO UPDATE SET case_id = excluded.case_id")
        if self.history:
            writer.insert(CaseActivity.__table__, ACTIVITY_COLUMNS, self.history)
        if self.new_facts:
            conn.execute(insert(CustomerFacts.__table__),
                         [vars(self.facts[c]) for c in sorted(self.new_facts)])
        changed = sorted(self.changed_facts - self.new_facts)
        if changed:
            table = CustomerFacts.__table__
            conn.execute(update(table).where(table.c.customer_id == bindparam("_id"))
                         .values(lifetime_value=bindparam("lifetime_value"), orders=bindparam("orders")),
                         [{"_id": c, "lifetime_value": self.facts[c].lifetime_value, "orders": self.facts[c].orders}
                          for c in changed])
        if self.changed_agents:
            table = Agent.__table__
            conn.execute(update(table).where(table.c.id == bindparam("_id"))
                         .values(last_assigned_at=bindparam("last_assigned_at")),
                         [{"_id": a, "last_assigned_at": self.agents[a].last_assigned_at}
                          for a in sorted(self.changed_agents)])
        if self.changed_queues:
            writer.insert(RoundRobin.__table__, ("queue", "last_agent_id"),
                          [(q, self.pointers[q]) for q in sorted(self.changed_queues)],
                          suffix=f" ON CONFLICT ({writer.quote('queue')}) DO UPDATE SET "
                                 "last_agent_id = excluded.last_agent_id")
        outbox.enqueue_structured(self.session, self.outbox)


_thread_keys = thread_keys


def on_interactions(session: Session, items: list[tuple[str, Interaction, datetime]], *, settings) -> list[str]:
    """Handle attributed interactions ``(customer_id, interaction, now)`` in order, in the
    session's transaction; returns what was done with each (as domain.on_interaction)."""
    from socialzone_care import domain

    outcomes: list[str] = []
    start = 0
    while start < len(items):
        batch = InteractionBatch(session, settings=settings, items=items[start:])
        for customer_id, interaction, now in items[start:]:
            outcome = batch.handle(customer_id=customer_id, interaction=interaction, now=now)
            if outcome != SLOW:
                outcomes.append(outcome)
                start += 1
                continue
            # The per-event code on what the batch wrote so far, then read everything again.
            batch.flush()
            session.expire_all()
            sla.forget_deals(session)
            sla.forget_facts(session)
            outcomes.append(domain.on_interaction(session, customer_id=customer_id, interaction=interaction,
                                                  settings=settings, now=now))
            session.flush()
            start += 1
            break
        else:
            batch.flush()
    return outcomes
