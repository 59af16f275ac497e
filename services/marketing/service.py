"""Registers the marketing service with the platform (entry point ``socialzone.services``)."""

from pathlib import Path

from socialzone_common.service import ServiceSpec
from socialzone_marketing.models import MarketingTable

SERVICE = ServiceSpec(
    name="marketing",
    title="Marketing",
    description="Advocate scoring, tiers, rewards, gaming detection, segments and campaigns.",
    migrations=Path(__file__).parent / "migrations",
    metadata=MarketingTable.metadata,
)
