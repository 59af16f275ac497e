"""Registers the ingest service with the platform (entry point ``socialzone.services``)."""

from pathlib import Path

from socialzone_common.service import ServiceSpec
from socialzone_ingest.models import IngestTable

SERVICE = ServiceSpec(
    name="ingest",
    title="Ingest",
    description="Connectors for social networks, blogs and the CRM; de-duplication and enrichment. Publishes ingest.interaction.recorded.",
    migrations=Path(__file__).parent / "migrations",
    metadata=IngestTable.metadata,
)
