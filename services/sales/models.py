"""Sales tables (SQLModel). They live in this service's own database or schema."""

from socialzone_common.db import new_table_base

SalesTable = new_table_base("SalesTable")
