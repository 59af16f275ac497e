"""Alembic environment of the platform tables (outbox, inbox, idempotency keys)."""

from socialzone_common.db import PlatformTable, run_alembic_env
from socialzone_common import idempotency, inbox, outbox  # noqa: F401  (register the tables)

run_alembic_env(PlatformTable.metadata)
