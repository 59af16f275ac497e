"""Alembic environment of the sales service (its own history)."""

from socialzone_common.db import run_alembic_env
from socialzone_sales.models import SalesTable

run_alembic_env(SalesTable.metadata)
