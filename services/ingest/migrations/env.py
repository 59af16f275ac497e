"""Alembic environment of the ingest service (its own history)."""

from socialzone_common.db import run_alembic_env
from socialzone_ingest.models import IngestTable

run_alembic_env(IngestTable.metadata)
