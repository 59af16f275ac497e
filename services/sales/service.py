"""Registers the sales service with the platform (entry point ``socialzone.services``)."""

from pathlib import Path

from socialzone_common.service import ServiceSpec
from socialzone_sales.models import SalesTable

SERVICE = ServiceSpec(
    name="sales",
    title="Sales",
    description="Leads from purchase intent and referrals, lead scoring, pipeline and deals.",
    migrations=Path(__file__).parent / "migrations",
    metadata=SalesTable.metadata,
)
