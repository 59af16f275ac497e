"""Interactions (unique per source and external id), their aliases, tombstones of deletions
that came first, feeds and their entries, poll cursors, erased customers.

Revision ID: ingest_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "ingest_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "interactions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("external_id", sa.String(length=512), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("author_key", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=128), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retracted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("document", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "external_id", name="uq_interactions_source_external_id"),
    )
    op.create_index("ix_interactions_author_key", "interactions", ["author_key"])
    op.create_index("ix_interactions_customer_id", "interactions", ["customer_id"])

    op.create_table(
        "interaction_aliases",
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("external_id", sa.String(length=512), nullable=False),
        sa.Column("interaction_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("source", "external_id"),
    )
    op.create_index("ix_interaction_aliases_interaction_id", "interaction_aliases", ["interaction_id"])

    op.create_table(
        "tombstones",
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("external_id", sa.String(length=512), nullable=False),
        sa.Column("retracted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("source", "external_id"),
    )

    op.create_table(
        "feeds",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("title", sa.String(length=512), nullable=True),
        sa.Column("etag", sa.String(length=512), nullable=True),
        sa.Column("last_modified", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_poll_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_polled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=1000), nullable=True),
        sa.Column("entries_seen", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("url"),
    )
    op.create_index("ix_feeds_next_poll_at", "feeds", ["next_poll_at"])

    op.create_table(
        "feed_entries",
        sa.Column("feed_id", sa.String(length=64), nullable=False),
        sa.Column("entry_id", sa.String(length=1024), nullable=False),
        sa.Column("interaction_id", sa.String(length=64), nullable=True),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["feed_id"], ["feeds.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("feed_id", "entry_id"),
    )

    op.create_table(
        "poll_cursors",
        sa.Column("connector", sa.String(length=64), nullable=False),
        sa.Column("stream", sa.String(length=512), nullable=False),
        sa.Column("since_id", sa.String(length=128), nullable=True),
        sa.Column("polled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=1000), nullable=True),
        sa.PrimaryKeyConstraint("connector", "stream"),
    )

    op.create_table(
        "erased_customers",
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("erasure_id", sa.String(length=128), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("customer_id"),
    )


def downgrade() -> None:
    op.drop_table("erased_customers")
    op.drop_table("poll_cursors")
    op.drop_table("feed_entries")
    op.drop_index("ix_feeds_next_poll_at", table_name="feeds")
    op.drop_table("tombstones")
    op.drop_table("feeds")
    op.drop_index("ix_interaction_aliases_interaction_id", table_name="interaction_aliases")
    op.drop_table("interaction_aliases")
    op.drop_index("ix_interactions_customer_id", table_name="interactions")
    op.drop_index("ix_interactions_author_key", table_name="interactions")
    op.drop_table("interactions")
