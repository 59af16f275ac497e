"""Registers the identity service with the platform (entry point ``socialzone.services``)."""

from pathlib import Path

from socialzone_common.service import ServiceSpec
from socialzone_identity.models import IdentityTable

SERVICE = ServiceSpec(
    name="identity",
    title="Identity",
    description="One customer across every network and the CRM, and the timeline every department works from.",
    migrations=Path(__file__).parent / "migrations",
    metadata=IdentityTable.metadata,
)
