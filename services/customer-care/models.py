"""Customer care tables (SQLModel) and the API models. They live in this service's own
database or schema; nothing here is an event contract (those are in socialzone_common.events)."""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field as PydField, field_validator
from sqlalchemy import JSON, Index, UniqueConstraint, event
from sqlmodel import Field

from socialzone_common.db import UtcDateTime, new_table_base
from socialzone_common.envelope import now_utc

CareTable = new_table_base("CareTable")


def _list() -> list:
    # A Python function, not the builtin: pydantic inspects a default factory's signature on
    # every construction, and a builtin's signature is parsed from text (slow on the hot path).
    return []


def _dict() -> dict:
    return {}

@event.listens_for(CareTable, "load", propagate=True)
@event.listens_for(CareTable, "refresh", propagate=True)
def _utc_on_load(target, *_args) -> None:
    """SQLite hands back naive datetimes: every time care stores is UTC, so say so."""
    for key, value in list(target.__dict__.items()):
        if isinstance(value, datetime) and value.tzinfo is None:
            target.__dict__[key] = value.replace(tzinfo=timezone.utc)

Status = Literal["open", "assigned", "responded", "resolved"]
OPEN_STATUSES = ("open", "assigned", "responded")


# --- cases ---------------------------------------------------------------------------------

class Case(CareTable, table=True):
    __tablename__ = "care_cases"
    __table_args__ = (
        Index("ix_care_cases_customer_topic_status", "customer_id", "topic", "status"),
        Index("ix_care_cases_queue_status_priority", "queue", "status", "priority"),
        Index("ix_care_cases_assignee_status", "assignee_id", "status"),
    )

    number: int | None = Field(default=None, primary_key=True)
    """The case number people quote ("case 1042"); the API's id is ``id``."""
    id: str = Field(max_length=64, unique=True)
    customer_id: str = Field(max_length=128, index=True)
    merged_from: str | None = Field(default=None, max_length=128)
    """The customer the case belonged to before a merge moved it (an unmerge moves it back)."""
    status: str = Field(default="open", max_length=16, index=True)
    topic: str = Field(default="general", max_length=64)
    channel: str = Field(max_length=64)
    language: str | None = Field(default=None, max_length=16)
    intents: list = Field(default_factory=_list, sa_type=JSON)
    tracked_topics: list = Field(default_factory=_list, sa_type=JSON)
    """The insights topics this case touches (its topic, brand:..., keyword:..., hashtag:...)."""
    opened_from: str = Field(max_length=16)
    interaction_id: str | None = Field(default=None, max_length=128)
    rule: str | None = Field(default=None, max_length=64)
    public: bool = False
    """Whether the conversation happens in public (a post, reply, mention, review)."""
    subject: str | None = Field(default=None, max_length=500)
    customer_name: str | None = Field(default=None, max_length=200)
    customer_handle: str | None = Field(default=None, max_length=200)
    followers: int | None = None
    sentiment_score: float | None = None

    priority: int = 50
    priority_label: str = Field(default="normal", max_length=16)
    priority_factors: list = Field(default_factory=_list, sa_type=JSON)

    queue: str = Field(max_length=64)
    assignee_id: str | None = Field(default=None, max_length=128)
    assignee_kind: str | None = Field(default=None, max_length=16)
    last_agent_id: str | None = Field(default=None, max_length=128)
    advocate_id: str | None = Field(default=None, max_length=128)
    """The advocate the question is (or was) offered to."""
    advocate_offer_expires_at: datetime | None = Field(default=None, sa_type=UtcDateTime)

    sla_policy: str = Field(default="standard", max_length=64)
    first_response_due: datetime | None = Field(default=None, sa_type=UtcDateTime)
    next_response_due: datetime | None = Field(default=None, sa_type=UtcDateTime)
    resolution_due: datetime | None = Field(default=None, sa_type=UtcDateTime)
    sla_clock: dict = Field(default_factory=_dict, sa_type=JSON)
    """Running SLA metrics: metric -> {start, due, warn_at, target_s}."""
    sla_next_check: datetime | None = Field(default=None, sa_type=UtcDateTime, index=True)
    """When the SLA clock must look at this case next (a warning, breach or offer expiry)."""
    sla_warnings: list = Field(default_factory=_list, sa_type=JSON)
    sla_breaches: list = Field(default_factory=_list, sa_type=JSON)
    escalated: bool = False

    opened_at: datetime = Field(default_factory=now_utc, sa_type=UtcDateTime)
    updated_at: datetime = Field(default_factory=now_utc, sa_type=UtcDateTime)
    first_responded_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    awaiting_since: datetime | None = Field(default=None, sa_type=UtcDateTime)
    """When the customer's latest unanswered message arrived (drives next response)."""
    responses: int = 0
    resolved_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    resolution: str | None = Field(default=None, max_length=64)
    resolver_id: str | None = Field(default=None, max_length=128)
    resolved_by_advocate: bool = False
    reopen_count: int = 0
    csat_score: int | None = None
    csat_comment: str | None = Field(default=None, max_length=2000)
    erased: bool = False


class CaseThread(CareTable, table=True):
    """Conversation keys (``<source>:conv:<id>``, ``<source>:ext:<id>``) -> the case they belong to."""

    __tablename__ = "care_case_threads"

    key: str = Field(primary_key=True, max_length=300)
    case_id: str = Field(max_length=64, index=True)


class CaseMessage(CareTable, table=True):
    """What was said on a case: the customer's messages, replies, notes, advocate answers."""

    __tablename__ = "care_case_messages"

    id: str = Field(primary_key=True, max_length=64)
    case_id: str = Field(max_length=64, index=True)
    kind: str = Field(max_length=16)
    """customer, reply, note (internal) or advocate (an advocate's answer)."""
    author_id: str | None = Field(default=None, max_length=128)
    author_kind: str = Field(max_length=16)
    """customer, agent, advocate or bot."""
    public: bool = False
    state: str = Field(default="sent", max_length=24)
    """received, sent, pending_approval (crisis mode), rejected."""
    text: str | None = Field(default=None, max_length=10_000)
    interaction_id: str | None = Field(default=None, max_length=128)
    external_id: str | None = Field(default=None, max_length=256)
    accepted: bool = False
    approved_by: str | None = Field(default=None, max_length=128)
    created_at: datetime = Field(default_factory=now_utc, sa_type=UtcDateTime)


class CaseActivity(CareTable, table=True):
    """The case's own history: every transition, warning, breach, escalation, priority change."""

    __tablename__ = "care_case_activity"

    id: int | None = Field(default=None, primary_key=True)
    case_id: str = Field(max_length=64, index=True)
    at: datetime = Field(sa_type=UtcDateTime)
    kind: str = Field(max_length=32)
    detail: dict = Field(default_factory=_dict, sa_type=JSON)


# --- configuration --------------------------------------------------------------------------

class OpeningRule(CareTable, table=True):
    """Which attributed interactions open a case, and with which topic, queue and SLA policy."""

    __tablename__ = "care_rules"

    name: str = Field(primary_key=True, max_length=64)
    position: int = 100
    enabled: bool = True
    intents: list = Field(default_factory=_list, sa_type=JSON)
    channels: list = Field(default_factory=_list, sa_type=JSON)
    keywords: list = Field(default_factory=_list, sa_type=JSON)
    min_priority: int = 1
    topic: str = Field(default="general", max_length=64)
    queue: str | None = Field(default=None, max_length=64)
    sla_policy: str | None = Field(default=None, max_length=64)


class Queue(CareTable, table=True):
    __tablename__ = "care_queues"

    name: str = Field(primary_key=True, max_length=64)
    channels: list = Field(default_factory=_list, sa_type=JSON)
    languages: list = Field(default_factory=_list, sa_type=JSON)
    skills: list = Field(default_factory=_list, sa_type=JSON)
    """Case topics this queue serves; an agent needs every one of them (empty: any)."""
    policy: str = Field(default="round_robin", max_length=16)
    escalation_queue: str | None = Field(default=None, max_length=64)
    """Where breached cases go: the team lead's queue."""
    last_agent_id: str | None = Field(default=None, max_length=128)
    """No longer written: the round-robin pointer lives in ``care_round_robin`` (migration 0002
    copied it there), so that queues without a row here rotate too."""


class RoundRobin(CareTable, table=True):
    """The round-robin pointer of a queue: the agent it assigned last. Its own table, not a
    column of ``care_queues``: the default queues (general, leads) usually have no row there,
    and creating one would make them a catch-all in ``routing.queue_for``."""

    __tablename__ = "care_round_robin"

    queue: str = Field(primary_key=True, max_length=64)
    last_agent_id: str | None = Field(default=None, max_length=128)


class Agent(CareTable, table=True):
    __tablename__ = "care_agents"

    id: str = Field(primary_key=True, max_length=128)
    name: str = Field(max_length=200)
    queues: list = Field(default_factory=_list, sa_type=JSON)
    skills: list = Field(default_factory=_list, sa_type=JSON)
    languages: list = Field(default_factory=_list, sa_type=JSON)
    capacity: int = 5
    active: bool = True
    lead: bool = False
    last_assigned_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class Calendar(CareTable, table=True):
    __tablename__ = "care_calendars"

    name: str = Field(primary_key=True, max_length=64)
    timezone: str = Field(default="UTC", max_length=64)
    hours: dict = Field(default_factory=_dict, sa_type=JSON)
    """Weekday (mon..sun) -> [["09:00", "17:00"], ...]; a missing day is closed."""
    holiday_country: str | None = Field(default=None, max_length=8)
    holiday_subdiv: str | None = Field(default=None, max_length=16)
    extra_holidays: list = Field(default_factory=_list, sa_type=JSON)


class SlaPolicy(CareTable, table=True):
    __tablename__ = "care_sla_policies"

    name: str = Field(primary_key=True, max_length=64)
    first_response_s: int
    next_response_s: int
    resolution_s: int
    calendar: str = Field(default="default", max_length=64)


class CannedResponse(CareTable, table=True):
    __tablename__ = "care_canned_responses"

    name: str = Field(primary_key=True, max_length=64)
    body: str = Field(max_length=5000)
    language: str | None = Field(default=None, max_length=16)


# --- replicas of other departments' facts (kept from their events) -------------------------

class CustomerFacts(CareTable, table=True):
    __tablename__ = "care_customer_facts"

    customer_id: str = Field(primary_key=True, max_length=128)
    lifetime_value: float = 0.0
    orders: int = 0
    advocate_tier: str = Field(default="none", max_length=16)
    advocate_flagged: bool = False


class Lead(CareTable, table=True):
    __tablename__ = "care_leads"

    lead_id: str = Field(primary_key=True, max_length=128)
    customer_id: str = Field(max_length=128, index=True)
    stage: str = Field(max_length=16)


class Crisis(CareTable, table=True):
    __tablename__ = "care_crises"

    alert_id: str = Field(primary_key=True, max_length=128)
    topic: str = Field(max_length=200, index=True)
    severity: str = Field(max_length=16)
    active: bool = True
    raised_at: datetime = Field(sa_type=UtcDateTime)
    resolved_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class AdvocateTopic(CareTable, table=True):
    """An advocate's accepted answers on a case topic."""

    __tablename__ = "care_advocate_topics"
    __table_args__ = (UniqueConstraint("advocate_id", "topic"),)

    id: int | None = Field(default=None, primary_key=True)
    advocate_id: str = Field(max_length=128, index=True)
    topic: str = Field(max_length=64, index=True)
    accepted_answers: int = 0


class ErasedCustomer(CareTable, table=True):
    """A digest of an erased customer id, and what was purged (no personal data)."""

    __tablename__ = "care_erasures"

    digest: str = Field(primary_key=True, max_length=64)
    erasure_id: str = Field(max_length=128)
    erased_at: datetime = Field(sa_type=UtcDateTime)
    cases: int = 0
    records_purged: int = 0


# --- API models ---------------------------------------------------------------------------

class ApiModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CaseCreate(ApiModel):
    customer_id: str = PydField(min_length=1, max_length=128)
    channel: str = PydField(min_length=1, max_length=64, examples=["phone", "email", "x"])
    topic: str = PydField(default="general", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    subject: str | None = PydField(default=None, max_length=500)
    text: str | None = PydField(default=None, max_length=10_000)
    language: str | None = PydField(default=None, max_length=16)
    intents: list[Literal["complaint", "question", "purchase_intent", "praise", "churn_risk", "referral"]] = []
    public: bool = False
    queue: str | None = PydField(default=None, max_length=64)
    sla_policy: str | None = PydField(default=None, max_length=64)


class ResponseCreate(ApiModel):
    kind: Literal["reply", "note", "advocate"] = "reply"
    """reply: to the customer; note: internal, the customer never sees it; advocate: an
    advocate's answer recorded on their behalf (author_id: the advocate's customer id)."""
    text: str | None = PydField(default=None, min_length=1, max_length=10_000)
    canned: str | None = PydField(default=None, max_length=64)
    """Name of a canned response; its {customer_name}, {case_number}, ... variables are filled in."""
    variables: dict[str, str] = {}
    public: bool = False
    """True: posted publicly on the network; False: a private message or e-mail."""
    author_id: str | None = PydField(default=None, max_length=128)


class ResolveRequest(ApiModel):
    resolution: str = PydField(default="solved", min_length=1, max_length=64)
    resolver_id: str | None = PydField(default=None, max_length=128)


class ReopenRequest(ApiModel):
    reason: str | None = PydField(default=None, max_length=500)


class CsatCreate(ApiModel):
    score: int = PydField(ge=1, le=5)
    comment: str | None = PydField(default=None, max_length=2000)
    channel: str = PydField(default="web", min_length=1, max_length=64)


class AssignRequest(ApiModel):
    assignee_id: str | None = PydField(default=None, max_length=128)
    """An agent id; None: let the queue's policy choose."""
    queue: str | None = PydField(default=None, max_length=64)


class QueueIn(ApiModel):
    channels: list[str] = []
    languages: list[str] = []
    skills: list[str] = []
    policy: Literal["round_robin", "least_loaded"] = "round_robin"
    escalation_queue: str | None = PydField(default=None, max_length=64)


class AgentIn(ApiModel):
    name: str = PydField(min_length=1, max_length=200)
    queues: list[str] = []
    skills: list[str] = []
    languages: list[str] = []
    capacity: int = PydField(default=5, ge=0, le=1000)
    active: bool = True
    lead: bool = False


_TIME = r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$"


class CalendarIn(ApiModel):
    timezone: str = "UTC"
    hours: dict[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                list[tuple[str, str]]] = {}
    holiday_country: str | None = PydField(default=None, max_length=8)
    holiday_subdiv: str | None = PydField(default=None, max_length=16)
    extra_holidays: list[date] = []

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo

        try:
            ZoneInfo(value)
        except Exception:
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: dict) -> dict:
        import re

        for day, spans in value.items():
            for start, end in spans:
                if not re.match(_TIME, start) or not re.match(_TIME, end) or start >= end:
                    raise ValueError(f"{day}: {start}-{end} is not a span HH:MM-HH:MM")
        return value


class SlaPolicyIn(ApiModel):
    first_response_s: int = PydField(gt=0)
    next_response_s: int = PydField(gt=0)
    resolution_s: int = PydField(gt=0)
    calendar: str = PydField(default="default", max_length=64)


class CannedIn(ApiModel):
    body: str = PydField(min_length=1, max_length=5000)
    language: str | None = PydField(default=None, max_length=16)


class RuleIn(ApiModel):
    position: int = 100
    enabled: bool = True
    intents: list[Literal["complaint", "question", "purchase_intent", "praise", "churn_risk", "referral"]] = []
    channels: list[str] = []
    keywords: list[str] = []
    min_priority: int = PydField(default=1, ge=1, le=100)
    topic: str = PydField(default="general", min_length=1, max_length=64)
    queue: str | None = PydField(default=None, max_length=64)
    sla_policy: str | None = PydField(default=None, max_length=64)


class AdvocateTopicIn(ApiModel):
    accepted_answers: int = PydField(default=1, ge=0)
