"""Events marketing publishes about advocates, rewards and campaigns."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import AwareDatetime, Field

from socialzone_common.catalog import MARKETING
from socialzone_common.events.common import Id, Score, ValueObject, ZoneEvent

Tier = Literal["none", "bronze", "silver", "gold", "platinum"]


class TierChanged(ZoneEvent, type="marketing.advocate.tier_changed", topic=MARKETING, version=1):
    """A customer's advocate tier went up or down.

    Subject and partition key: ``customer_id``.
    """

    customer_id: Id
    previous_tier: Tier
    """none: the customer was not an advocate before."""
    tier: Tier
    score: Score = Field(ge=0)
    """The advocate score that placed them in the new tier."""
    reason: str | None = None
    """What moved the score, e.g. case_resolved, deal_won, decay, manual."""


class Signal(ValueObject):
    """One measurement a gaming rule looked at."""

    name: str
    """e.g. posts_per_hour, self_replies, reward_velocity, shared_device."""
    value: Score
    threshold: Score | None = None


class AdvocateFlagged(ZoneEvent, type="marketing.advocate.flagged", topic=MARKETING, version=1):
    """An advocate's activity looks like gaming the rewards; rewards are held for review.

    Subject and partition key: ``customer_id``.
    """

    customer_id: Id
    reason: str
    """The rule that fired, e.g. burst_activity, self_referral, sockpuppet_ring."""
    signals: tuple[Signal, ...] = ()
    rewards_held: bool = True


class RewardGranted(ZoneEvent, type="marketing.reward.granted", topic=MARKETING, version=1):
    """Points were granted to an advocate.

    Subject and partition key: ``customer_id``.
    """

    reward_id: Id
    customer_id: Id
    points: int = Field(ge=1)
    reason: str
    """e.g. case_resolved_by_advocate, referral_deal_won, helpful_answer, campaign."""
    source_event_id: str | None = None
    """The event that earned the reward; rewards are granted once per source event."""
    balance: int | None = None
    """The advocate's point balance after the grant."""


class CampaignEvent(ZoneEvent):
    """Fields of every campaign event (abstract).

    A campaign has no customer: subject and partition key are ``campaign_id``.
    """

    subject_field: ClassVar[str] = "campaign_id"

    campaign_id: Id
    name: str


class CampaignLaunched(CampaignEvent, type="marketing.campaign.launched", topic=MARKETING, version=1):
    """A campaign went live.

    No customer: subject and partition key are ``campaign_id``.
    """

    channels: tuple[str, ...] = ()
    """Where it runs, e.g. x, instagram, email."""
    segment_id: Id | None = None
    """The audience segment it targets."""
    ends_at: AwareDatetime | None = None
    reason: str | None = None


class CampaignPaused(CampaignEvent, type="marketing.campaign.paused", topic=MARKETING, version=1):
    """A running campaign was paused, by hand or because insights raised a crisis alert.

    No customer: subject and partition key are ``campaign_id``.
    """

    paused_by: Literal["alert", "agent", "schedule"]
    reason: str | None = None
    alert_id: Id | None = None
    """The insights alert that paused it, when paused_by is alert."""


class CampaignResumed(CampaignEvent, type="marketing.campaign.resumed", topic=MARKETING, version=1):
    """A paused campaign was resumed, by hand or because the alert that paused it resolved.

    No customer: subject and partition key are ``campaign_id``.
    """

    resumed_by: Literal["alert", "agent", "schedule"]
    reason: str | None = None
    alert_id: Id | None = None
    """The resolved insights alert, when resumed_by is alert."""
