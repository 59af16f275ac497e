"""Events insights publishes about alerts.

An alert has no customer. Its subject is ``alert_id`` (the thing the event is
about) and its partition key is the tracked ``topic``, so every alert on one
topic, raised and resolved, stays in order on one partition.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import AwareDatetime, Field

from socialzone_common.catalog import INSIGHTS
from socialzone_common.events.common import Id, Score, TimeWindow, ZoneEvent

AlertKind = Literal["crisis", "anomaly", "threshold"]


class AlertEvent(ZoneEvent):
    """Fields of every alert event (abstract)."""

    subject_field: ClassVar[str] = "alert_id"
    key_field: ClassVar[str | None] = "topic"

    alert_id: Id
    kind: AlertKind
    """crisis: a surge of negative mentions of our brands; anomaly: a metric left its
    expected band; threshold: a metric crossed a configured limit."""
    topic: str = Field(min_length=1, examples=["brand:acme", "keyword:outage", "hashtag:acmefail"])
    """The tracked topic the alert is about: a brand, keyword or hashtag tracker key."""


class AlertRaised(AlertEvent, type="insights.alert.raised", topic=INSIGHTS, version=1):
    """insights raised an alert: a metric of a tracked topic left its expected range.

    No customer: subject is ``alert_id``, partition key is ``topic``.
    """

    severity: Literal["info", "warning", "critical"]
    metric: str
    """What was measured, e.g. mentions, negative_share, sentiment, share_of_voice."""
    observed: Score
    expected: Score
    """The baseline the observation was compared with."""
    window: TimeWindow
    """The time window the observation covers."""
    sample_interaction_ids: tuple[Id, ...] = ()
    """A few interactions behind the alert, for a first look."""


class AlertResolved(AlertEvent, type="insights.alert.resolved", topic=INSIGHTS, version=1):
    """An alert was resolved: the metric is back in range, or an analyst closed it.

    No customer: subject is ``alert_id``, partition key is ``topic``.
    """

    resolved_by: Literal["recovered", "analyst", "expired"]
    raised_at: AwareDatetime
    reason: str | None = None
