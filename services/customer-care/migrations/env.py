"""Alembic environment of the customer care service (its own history)."""

from socialzone_common.db import run_alembic_env
from socialzone_care.models import CareTable

run_alembic_env(CareTable.metadata)
