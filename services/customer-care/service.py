"""Registers the customer care service with the platform (entry point ``socialzone.services``)."""

from pathlib import Path

from socialzone_common.service import ServiceSpec
from socialzone_care.models import CareTable

SERVICE = ServiceSpec(
    name="care",
    title="Customer care",
    description="Cases, queues, routing, SLAs, responses and CSAT, seeing the whole customer.",
    migrations=Path(__file__).parent / "migrations",
    metadata=CareTable.metadata,
)
