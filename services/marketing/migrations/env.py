"""Alembic environment of the marketing service (its own history)."""

from socialzone_common.db import run_alembic_env
from socialzone_marketing.models import MarketingTable

run_alembic_env(MarketingTable.metadata)
