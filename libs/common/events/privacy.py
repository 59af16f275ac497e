"""The erasure protocol on zone.privacy: identity's request and each service's completion.

identity publishes ``identity.customer.erasure_requested``; every service that
holds customer data purges it and answers with ``<service>.erasure.completed``.
identity closes the erasure once all of them have answered.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from socialzone_common.catalog import PRIVACY
from socialzone_common.events.common import Id, ZoneEvent


class ErasureRequested(ZoneEvent, type="identity.customer.erasure_requested", topic=PRIVACY, version=1):
    """A customer asked to be forgotten: every service must purge their data.

    Subject and partition key: ``customer_id``.
    """

    erasure_id: Id
    customer_id: Id
    requested_at: AwareDatetime
    merged_ids: tuple[Id, ...] = ()
    """Customers merged into this one over time: purge what is held under those ids too."""


class ErasureCompleted(ZoneEvent):
    """Base of the services' answers (abstract: each service declares its own type)."""

    erasure_id: Id
    customer_id: Id
    completed_at: AwareDatetime
    records_purged: int = Field(ge=0)
    """How many records the service deleted or anonymized (0: it held nothing)."""


class IngestErasureCompleted(ErasureCompleted, type="ingest.erasure.completed", topic=PRIVACY, version=1):
    """ingest purged a customer's raw interactions and connector state.

    Subject and partition key: ``customer_id``.
    """

    service: Literal["ingest"] = "ingest"


class CareErasureCompleted(ErasureCompleted, type="care.erasure.completed", topic=PRIVACY, version=1):
    """customer-care purged a customer's cases, responses and CSAT answers.

    Subject and partition key: ``customer_id``.
    """

    service: Literal["care"] = "care"


class MarketingErasureCompleted(ErasureCompleted, type="marketing.erasure.completed", topic=PRIVACY, version=1):
    """marketing purged a customer's advocate profile, rewards and segment memberships.

    Subject and partition key: ``customer_id``.
    """

    service: Literal["marketing"] = "marketing"


class SalesErasureCompleted(ErasureCompleted, type="sales.erasure.completed", topic=PRIVACY, version=1):
    """sales purged a customer's leads and deals.

    Subject and partition key: ``customer_id``.
    """

    service: Literal["sales"] = "sales"


class InsightsErasureCompleted(ErasureCompleted, type="insights.erasure.completed", topic=PRIVACY, version=1):
    """insights purged a customer's interactions from its stores; aggregates keep no identity.

    Subject and partition key: ``customer_id``.
    """

    service: Literal["insights"] = "insights"
