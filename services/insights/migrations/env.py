"""Alembic environment of the insights service (its own history)."""

from socialzone_common.db import run_alembic_env
from socialzone_insights.models import InsightsTable

run_alembic_env(InsightsTable.metadata)
