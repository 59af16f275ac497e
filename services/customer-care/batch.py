"""Attributed interactions a polled batch at a time: the same decisions as
:func:`domain.on_interaction`, with the reads done up front and the writes in bulk.

The consumer's batch handler runs here, in ONE transaction per polled batch (the
platform claims the inbox rows in bulk and, if this raises, rolls back and handles
the batch one event per transaction with the per-event handler: the reference).

- **Reads**: for the batch's customers, one query each for their open cases, the
  thread keys the interactions continue (and those cases), their replicated facts
  (value, advocate tier) and open deals; agents with their load and the queue rows
  when the first case needs routing; advocates per topic when a question may be
  offered. Rules, queues' configuration, members, SLA policies, calendars and crises
  come from the per-process configuration cache, as on the per-event path.
- **Decisions** in Python on :class:`CaseState` objects (a row of ``care_cases``
  with the ORM model's attribute names, so the pure parts of ``sla``, ``priority``
  and ``routing`` work on them unchanged), in event order: two messages of one
  customer in one batch thread into one case as they would one after the other.
- **Writes** with Core executemany at the end: new cases, changed columns of
  existing cases, messages, thread keys, history, agents' and queues' round-robin
  state, facts, and the outbox events in order (``outbox.enqueue_many``).
- **Rare branches go through the per-event code**: a customer's reply that reopens a
  resolved case and an advocate answering in a thread are handled by
  :func:`domain.on_interaction` itself in the same transaction. The batch writes what
  it has first and reads the database again afterwards, so the order of effects is
  the order of events.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from socialzone_common import outbox
from socialzone_common.events.care import CaseAssigned, CaseOpened
from socialzone_common.events.common import Interaction
from socialzone_care import priority as scoring
from socialzone_care import routing, sla
from socialzone_care.common import SOURCE
from socialzone_care.models import (
    OPEN_STATUSES, AdvocateTopic, Agent, Case, CaseActivity, CaseMessage, CaseThread, CustomerFacts, Lead,
    OpeningRule, Queue,
)

CASES = Case.__table__
CASE_COLUMNS = tuple(c.name for c in CASES.columns)
INSERT_COLUMNS = tuple(c for c in CASE_COLUMNS if c != "number")
SLOW = "slow"


def _aware(value):
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def _row(mapping) -> dict:
    """A Core row as a dict, datetimes in UTC (SQLite hands them back naive; the ORM models
    say so on load, see models._utc_on_load)."""
    return {key: _aware(value) for key, value in mapping.items()}


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
        return {c: getattr(self, c) for c in CASE_COLUMNS if getattr(self, c) != self._loaded[c]}


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
        # state read from the database (and changed in memory)
        self.cases: dict[str, CaseState] = {}
        self.open_cases: dict[str, list[CaseState]] = {}  # customer -> open cases, oldest first
        self.threads: dict[str, str] = {}
        self.facts: dict[str, Row | None] = {}
        self.deals: dict[str, int] = {}
        self.agents: dict[str, Row] | None = None  # read with the queues when a case is first routed
        self.queue_rows: dict[str, Row] = {}
        self.loads: dict[str, int] = {}
        self.advocates: dict[str, list[str]] = {}
        # writes, in order
        self.new_cases: list[CaseState] = []
        self.messages: list[dict] = []
        self.thread_writes: dict[str, str] = {}
        self.history: list[dict] = []
        self.events: list = []
        self.new_facts: set[str] = set()
        self.changed_facts: set[str] = set()
        self.changed_agents: set[str] = set()
        self.changed_queues: set[str] = set()
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
        for row in conn.execute(statement):
            if row.status in OPEN_STATUSES:
                case = self._remember(row._mapping)
                self.open_cases.setdefault(case.customer_id, []).append(case)
        keys = sorted({key for customer_id, interaction, _ in items
                       for key in _thread_keys(interaction, customer_id)})
        if keys:
            table = CaseThread.__table__
            for key, case_id in conn.execute(select(table.c.key, table.c.case_id).where(table.c.key.in_(keys))):
                self.threads[key] = case_id
            missing = sorted(set(self.threads.values()) - set(self.cases))
            if missing:
                for row in conn.execute(select(CASES).where(CASES.c.id.in_(missing))):
                    self._remember(row._mapping)
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

    def _remember(self, mapping) -> CaseState:
        case = CaseState(_row(mapping), persisted=True)
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
        settings = self.settings
        target = None
        for key in sorted(_thread_keys(interaction, customer_id)):
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

        rule = _match_rule(self.session, interaction)
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
        from socialzone_care.domain import PUBLIC_KINDS, new_id

        self.messages.append({
            "id": new_id(), "case_id": case.id, "kind": "customer", "author_id": case.customer_id,
            "author_kind": "customer", "public": interaction.kind in PUBLIC_KINDS, "state": "received",
            "text": interaction.text, "interaction_id": interaction.interaction_id,
            "external_id": interaction.external_id, "accepted": False, "approved_by": None, "created_at": now})
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
        from socialzone_care.domain import IDENTIFIER_HANDLES, PUBLIC_KINDS, new_id, tracked_topics

        session, settings = self.session, self.settings
        author = interaction.author
        first = author.identifiers[0]
        handle = None if first.type in IDENTIFIER_HANDLES else first.value
        sentiment = interaction.enrichment.sentiment
        language = interaction.enrichment.language or interaction.language
        channel, topic, intents = interaction.source, rule.topic, list(interaction.enrichment.intents)
        public = interaction.kind in PUBLIC_KINDS
        values = {column: None for column in CASE_COLUMNS}
        values.update(
            id=new_id(), customer_id=customer_id, status="open", topic=topic, channel=channel, language=language,
            intents=list(intents), tracked_topics=tracked_topics(topic, interaction), opened_from="interaction",
            interaction_id=interaction.interaction_id, rule=rule.name, public=public,
            subject=(interaction.text or "")[:200] or None, customer_name=author.display_name,
            customer_handle=handle, followers=author.followers,
            sentiment_score=sentiment.score if sentiment else None,
            priority=50, priority_label="normal", priority_factors=[],
            queue=rule.queue or routing.queue_for(session, channel=channel, language=language, topic=topic),
            sla_policy=self._sla_policy(customer_id, rule.sla_policy),
            sla_clock={}, sla_warnings=[], sla_breaches=[], escalated=False, opened_at=now, updated_at=now,
            responses=0, resolved_by_advocate=False, reopen_count=0, erased=False)
        case = CaseState(values, persisted=False)
        sla.start(session, case, "first_response", now=now, warning_fraction=settings.sla_warning_fraction)
        sla.start(session, case, "resolution", now=now, warning_fraction=settings.sla_warning_fraction)
        self.refresh_priority(case, now, reason="opened")
        if case.priority < rule.min_priority:
            return None
        case._persisted = True
        self.new_cases.append(case)
        self.cases[case.id] = case
        self.open_cases.setdefault(customer_id, []).append(case)
        self.messages.append({
            "id": new_id(), "case_id": case.id, "kind": "customer", "author_id": customer_id,
            "author_kind": "customer", "public": public, "state": "received", "text": interaction.text,
            "interaction_id": interaction.interaction_id, "external_id": interaction.external_id,
            "accepted": False, "approved_by": None, "created_at": now})
        self._remember_thread(case, interaction)
        self.activity(case, "opened", now, opened_from="interaction", rule=case.rule, priority=case.priority,
                      queue=case.queue, sla_policy=case.sla_policy)
        self.emit(CaseOpened(
            case_id=case.id, customer_id=customer_id, opened_from="interaction",
            interaction_id=case.interaction_id, channel=channel, topic=topic, intents=tuple(intents),
            priority=case.priority_label, queue=case.queue, sla_policy=case.sla_policy,
            first_response_due=case.first_response_due, resolution_due=case.resolution_due))
        if not self._offer_to_advocate(case, now):
            self._route(case, now)
        return case

    def _sla_policy(self, customer_id: str, requested: str | None) -> str:
        """domain.choose_sla_policy."""
        if requested and sla.policy_exists(self.session, requested):
            return requested
        row = self.facts.get(customer_id)
        vip = (row is not None and row.advocate_tier in ("gold", "platinum")) or self.deals.get(customer_id, 0) > 0
        return "vip" if vip and sla.policy_exists(self.session, "vip") else "standard"

    def _remember_thread(self, case: CaseState, interaction: Interaction) -> None:
        keys = _thread_keys(interaction, case.customer_id)
        if interaction.external_id:
            keys.append(f"{interaction.source}:ext:{interaction.external_id}")
        for key in dict.fromkeys(keys):
            self.threads[key[:300]] = self.thread_writes[key[:300]] = case.id

    def refresh_priority(self, case: CaseState, now: datetime, *, reason: str) -> bool:
        """sla.refresh_priority with the batch's facts and deals."""
        facts = self.facts.get(case.customer_id)
        sla_used, sla_metric = sla.used(self.session, case, now) if case.status in OPEN_STATUSES else (None, None)
        inputs = scoring.Inputs(
            intents=tuple(case.intents), sentiment_score=case.sentiment_score, followers=case.followers,
            lifetime_value=facts.lifetime_value if facts else 0.0,
            advocate_tier=facts.advocate_tier if facts else "none",
            open_deals=self.deals.get(case.customer_id, 0),
            crisis=tuple(sla.active_crises(self.session, case.tracked_topics)),
            sla_used=sla_used, sla_metric=sla_metric, escalated=case.escalated)
        value, name, factors = scoring.compute(inputs, self.weights)
        changed = value != case.priority
        if changed and case._persisted:
            self.activity(case, "priority_changed", now, previous=case.priority, priority=value, reason=reason)
        case.priority, case.priority_label, case.priority_factors = value, name, factors
        if changed:
            case.updated_at = now
        return changed

    # --- routing -------------------------------------------------------------------------------

    def _offer_to_advocate(self, case: CaseState, now: datetime) -> bool:
        """domain.offer_to_advocate."""
        if not case.public or "question" not in case.intents or {"complaint", "churn_risk"} & set(case.intents):
            return False
        candidates = [a for a in self._advocates_on(case.topic) if a != case.customer_id]
        if not candidates:
            return False
        settings = self.settings
        expires = now + timedelta(seconds=settings.advocate_offer_s)
        if case.first_response_due is not None:
            expires = min(expires, case.first_response_due - timedelta(seconds=settings.advocate_fallback_margin_s))
        if expires <= now:
            return False
        case.advocate_id, case.advocate_offer_expires_at = candidates[0], expires
        self._assign(case, candidates[0], kind="advocate", rule="advocate_first_tier", now=now)
        sla.schedule(case, now)
        return True

    def _route(self, case: CaseState, now: datetime) -> None:
        """routing.route for a new case (its own queue, no last agent)."""
        self._routing_state()
        q = routing.queues(self.session).get(case.queue)
        agent = self._pick_agent(case.queue, case)
        if agent is not None:
            self._assign(case, agent.id, kind="agent", rule=q.policy if q else "round_robin", now=now)

    def _pick_agent(self, queue_name: str, case: CaseState) -> Row | None:
        """routing.pick_agent on the batch's agents, loads and queue rows."""
        ids = routing.members(self.session, queue_name)
        if not ids:
            return None
        queue = self.queue_rows.get(queue_name)
        policy = queue.policy if queue else "round_robin"
        wanted = set(ids)
        agents = [a for a in self.agents.values() if a.id in wanted and a.active and queue_name in a.queues]
        if not agents:
            return None
        loads = self.loads
        eligible = [a for a in agents if routing.can_take_loaded(a, case, queue, loads.get(a.id, 0))]
        if not eligible:
            return None
        if policy == "least_loaded":
            return min(eligible, key=lambda a: (loads.get(a.id, 0), a.last_assigned_at is not None,
                                                a.last_assigned_at or datetime.min, a.id))
        last = queue.last_agent_id if queue else None
        after = [a for a in eligible if last is None or a.id > last]
        return (after or eligible)[0]

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
            queue_row = self.queue_rows.get(case.queue) if rule in ("round_robin", "least_loaded") else None
            if queue_row is not None:
                queue_row.last_agent_id = assignee_id
                self.changed_queues.add(queue_row.name)
        if self.agents is not None and assignee_id in self.loads:
            self.loads[assignee_id] += 1
        self.activity(case, "assigned", now, assignee_id=assignee_id, assignee_kind=kind, queue=case.queue,
                      rule=rule, previous_assignee_id=previous)
        self.emit(CaseAssigned(case_id=case.id, customer_id=case.customer_id, queue=case.queue,
                               assignee_id=assignee_id, assignee_kind=kind, previous_assignee_id=previous,
                               rule=rule))

    # --- writes ----------------------------------------------------------------------------

    def activity(self, case: CaseState, kind: str, now: datetime, **detail) -> None:
        self.history.append({"case_id": case.id, "at": now, "kind": kind, "detail": detail})

    def emit(self, payload) -> None:
        self.events.append(payload.to_envelope(source=SOURCE))

    def flush(self) -> None:
        """Write what the batch decided, in bulk, in the session's transaction."""
        conn = self.session.connection()
        if self.new_cases:
            conn.execute(insert(CASES), [{c: getattr(case, c) for c in INSERT_COLUMNS} for case in self.new_cases])
        by_columns: dict[tuple[str, ...], list[dict]] = {}
        for case in self.cases.values():
            if case._new:
                continue
            changes = case.changes()
            if changes:
                by_columns.setdefault(tuple(sorted(changes)), []).append({"_id": case.id, **changes})
        for columns, rows in by_columns.items():
            conn.execute(update(CASES).where(CASES.c.id == bindparam("_id"))
                         .values({c: bindparam(c) for c in columns}), rows)
        if self.messages:
            conn.execute(insert(CaseMessage.__table__), self.messages)
        if self.thread_writes:
            table = CaseThread.__table__
            statement = (postgresql.insert if self.postgres else sqlite.insert)(table)
            conn.execute(statement.on_conflict_do_update(index_elements=["key"],
                                                         set_={"case_id": statement.excluded.case_id}),
                         [{"key": key, "case_id": case_id} for key, case_id in self.thread_writes.items()])
        if self.history:
            conn.execute(insert(CaseActivity.__table__), self.history)
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
            table = Queue.__table__
            conn.execute(update(table).where(table.c.name == bindparam("_id"))
                         .values(last_agent_id=bindparam("last_agent_id")),
                         [{"_id": q, "last_agent_id": self.queue_rows[q].last_agent_id}
                          for q in sorted(self.changed_queues)])
        outbox.enqueue_many(self.session, self.events)


def _thread_keys(interaction: Interaction, customer_id: str) -> list[str]:
    from socialzone_care.domain import thread_keys

    return thread_keys(interaction, customer_id)


def _match_rule(session: Session, interaction: Interaction) -> OpeningRule | None:
    from socialzone_care.domain import match_rule

    return match_rule(session, interaction)


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
