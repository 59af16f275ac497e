"""Registers the insights service with the platform (entry point ``socialzone.services``)."""

from pathlib import Path

from socialzone_common.service import ServiceSpec
from socialzone_insights.models import InsightsTable

SERVICE = ServiceSpec(
    name="insights",
    title="Insights",
    description="Time series, share of voice, keyword trackers, KPIs and crisis alerts.",
    migrations=Path(__file__).parent / "migrations",
    metadata=InsightsTable.metadata,
)
