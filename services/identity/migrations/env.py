"""Alembic environment of the identity service (its own history)."""

from socialzone_common.db import run_alembic_env
from socialzone_identity.models import IdentityTable

run_alembic_env(IdentityTable.metadata)
