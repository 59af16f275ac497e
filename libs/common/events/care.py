"""Events customer care publishes about cases, SLAs and satisfaction.

Subject and partition key of every type: ``customer_id``, so one customer's
case history stays in order.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from socialzone_common.catalog import CARE
from socialzone_common.events.common import Id, Intent, ZoneEvent

Priority = Literal["low", "normal", "high", "urgent"]
Handler = Literal["agent", "advocate", "bot"]
SlaMetric = Literal["first_response", "next_response", "resolution"]


class CaseEvent(ZoneEvent):
    """Fields of every case event (abstract)."""

    case_id: Id
    customer_id: Id


class CaseOpened(CaseEvent, type="care.case.opened", topic=CARE, version=1):
    """A care case was opened for a customer.

    Subject and partition key: ``customer_id``.
    """

    opened_from: Literal["interaction", "agent"]
    interaction_id: Id | None = None
    """The interaction that opened the case, when opened_from is interaction."""
    channel: str
    """Where the conversation happens: the interaction's source (x, email, ...) or phone."""
    topic: str | None = None
    """What it is about, from routing rules, e.g. billing, delivery, product_defect."""
    intents: tuple[Intent, ...] = ()
    priority: Priority
    queue: str
    sla_policy: str
    """The SLA policy that applies, e.g. standard or vip."""
    first_response_due: AwareDatetime | None = None
    resolution_due: AwareDatetime | None = None


class CaseAssigned(CaseEvent, type="care.case.assigned", topic=CARE, version=1):
    """A case was assigned (or re-assigned) to an agent, an advocate or a bot.

    Subject and partition key: ``customer_id``.
    """

    queue: str
    assignee_id: Id
    """An agent's user id, an advocate's customer id, or a bot's name."""
    assignee_kind: Handler
    """advocate: a community advocate from marketing takes a first-tier question."""
    previous_assignee_id: Id | None = None
    rule: str | None = None
    """The routing rule that chose the assignee; None for a manual assignment."""


class CaseResponded(CaseEvent, type="care.case.responded", topic=CARE, version=1):
    """A response was sent to the customer on a case.

    Subject and partition key: ``customer_id``.
    """

    response_id: Id
    responder_id: Id
    responder_kind: Handler
    channel: str
    public: bool
    """True when posted publicly on the network, False for a private message or e-mail."""
    first_response: bool
    """True for the case's first response (the first_response SLA metric stops here)."""
    seconds_since_opened: int = Field(ge=0)


class CaseResolved(CaseEvent, type="care.case.resolved", topic=CARE, version=1):
    """A case was resolved.

    Subject and partition key: ``customer_id``.
    """

    resolution: str
    """How it ended, e.g. solved, answered, refunded, no_action, duplicate, spam."""
    resolver_id: Id | None = None
    resolved_by_advocate: bool = False
    """True when a community advocate gave the answer that solved it."""
    advocate_id: Id | None = None
    """The advocate's customer id, when resolved_by_advocate (marketing rewards them)."""
    responses: int = Field(ge=0)
    seconds_to_resolve: int = Field(ge=0)
    """Time from opening to this resolution, the resolution SLA metric."""


class CaseReopened(CaseEvent, type="care.case.reopened", topic=CARE, version=1):
    """A resolved case was reopened.

    Subject and partition key: ``customer_id``.
    """

    reopened_by: Literal["customer", "agent"]
    interaction_id: Id | None = None
    """The customer's follow-up interaction, when reopened_by is customer."""
    reason: str | None = None


class SlaBreached(CaseEvent, type="care.sla.breached", topic=CARE, version=1):
    """A case missed an SLA target.

    Subject and partition key: ``customer_id``.
    """

    metric: SlaMetric
    sla_policy: str
    target_seconds: int = Field(ge=0)
    due_at: AwareDatetime
    priority: Priority
    queue: str
    assignee_id: Id | None = None


class CsatRecorded(CaseEvent, type="care.csat.recorded", topic=CARE, version=1):
    """A customer rated how a case was handled (CSAT).

    Subject and partition key: ``customer_id``.
    """

    score: int = Field(ge=1, le=5)
    """1 (very dissatisfied) to 5 (very satisfied)."""
    channel: str
    """Where the survey was answered, e.g. email, x, web."""
    assignee_id: Id | None = None
    resolved_by_advocate: bool = False
