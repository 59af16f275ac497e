"""Events sales publishes about leads and deals.

Subject and partition key of every type: ``customer_id``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from socialzone_common.catalog import SALES
from socialzone_common.events.common import Currency, Id, Money, ZoneEvent

Stage = Literal["new", "contacted", "qualified", "proposal", "negotiation", "won", "lost"]


class LeadCreated(ZoneEvent, type="sales.lead.created", topic=SALES, version=1):
    """A lead was created from a purchase intent, a referral or by hand.

    Subject and partition key: ``customer_id``.
    """

    lead_id: Id
    customer_id: Id
    source: Literal["interaction", "referral", "agent"]
    interaction_id: Id | None = None
    """The interaction that showed the purchase intent, when source is interaction."""
    referrer_customer_id: Id | None = None
    """The advocate who referred the customer, when source is referral."""
    score: int = Field(ge=0, le=100)
    """Lead score: 0 (cold) to 100 (ready to buy)."""
    stage: Stage = "new"


class LeadStageChanged(ZoneEvent, type="sales.lead.stage_changed", topic=SALES, version=1):
    """A lead moved along the pipeline.

    Subject and partition key: ``customer_id``.
    """

    lead_id: Id
    customer_id: Id
    from_stage: Stage
    to_stage: Stage
    score: int | None = Field(default=None, ge=0, le=100)
    """The lead score after the move, when it changed."""


class DealWon(ZoneEvent, type="sales.deal.won", topic=SALES, version=1):
    """A deal was won.

    Subject and partition key: ``customer_id``.
    """

    deal_id: Id
    lead_id: Id | None = None
    customer_id: Id
    amount: Money
    currency: Currency
    reason: str | None = None
    referrer_customer_id: Id | None = None
    """The advocate who referred the customer, if any (marketing rewards them)."""


class DealLost(ZoneEvent, type="sales.deal.lost", topic=SALES, version=1):
    """A deal was lost.

    Subject and partition key: ``customer_id``.
    """

    deal_id: Id
    lead_id: Id | None = None
    customer_id: Id
    amount: Money | None = None
    """The amount the deal was worth when it was lost, if known."""
    currency: Currency | None = None
    reason: str
    """Why, e.g. price, competitor, no_budget, no_response."""
    competitor: str | None = None
