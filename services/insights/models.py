"""Insights tables (SQLModel). They live in this service's own database or schema."""

from socialzone_common.db import new_table_base

InsightsTable = new_table_base("InsightsTable")
