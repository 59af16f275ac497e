"""Identity tables: customers, identifiers, timeline, merges, match suggestions, blocking
keys, consents, erasures, suppressions, audit log.

Revision ID: identity_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "identity_0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("merged_into", sa.String(40), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.Column("created_from", sa.String(16), nullable=False),
        sa.Column("display_name", sa.String(256), nullable=True),
        sa.Column("search_text", sa.String(2000), nullable=True),
        sa.Column("profile", sa.JSON(), nullable=True),
        sa.Column("needs_match", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_customers_merged_into", "customers", ["merged_into"])
    op.create_index("ix_customers_needs_match", "customers", ["needs_match"])
    op.create_table(
        "identifiers",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("value", sa.String(512), nullable=False),
        sa.Column("customer_id", sa.String(40), nullable=False),
        sa.Column("origin_customer_id", sa.String(40), nullable=False),
        sa.Column("strength", sa.String(8), nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("evidence_event_id", sa.String(64), nullable=True),
        sa.Column("evidence_agent", sa.String(128), nullable=True),
        sa.Column("anchor_id", sa.Integer(), nullable=True),
        sa.Column("linked_at", TZ, nullable=False),
        sa.Column("last_seen_at", TZ, nullable=True),
        sa.UniqueConstraint("type", "value", name="uq_identifiers_type_value"),
    )
    op.create_index("ix_identifiers_customer_id", "identifiers", ["customer_id"])
    op.create_table(
        "timeline",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("customer_id", sa.String(40), nullable=False),
        sa.Column("origin_customer_id", sa.String(40), nullable=False),
        sa.Column("via_identifier_id", sa.Integer(), nullable=True),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(128), nullable=False),
        sa.Column("department", sa.String(32), nullable=False),
        sa.Column("occurred_at", TZ, nullable=False),
        sa.Column("summary", sa.String(300), nullable=False),
        sa.Column("channel", sa.String(64), nullable=True),
        sa.Column("interaction_id", sa.String(128), nullable=True),
        sa.Column("ref_id", sa.String(128), nullable=True),
        sa.Column("sentiment", sa.Float(), nullable=True),
        sa.Column("language", sa.String(16), nullable=True),
        sa.Column("amount", sa.Numeric(18, 4), nullable=True),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("retracted", sa.Boolean(), nullable=False),
        sa.Column("event", sa.JSON(), nullable=True),
    )
    op.create_index("ix_timeline_customer_time", "timeline", ["customer_id", "occurred_at", "id"])
    op.create_index("ix_timeline_interaction", "timeline", ["interaction_id"])
    op.create_table(
        "merges",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("survivor_id", sa.String(40), nullable=False),
        sa.Column("merged_id", sa.String(40), nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(1000), nullable=True),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=True),
        sa.Column("survivor_profile_before", sa.JSON(), nullable=True),
        sa.Column("event_id", sa.String(64), nullable=True),
        sa.Column("merged_at", TZ, nullable=False),
        sa.Column("unmerged_at", TZ, nullable=True),
    )
    op.create_index("ix_merges_survivor_id", "merges", ["survivor_id"])
    op.create_index("ix_merges_merged_id", "merges", ["merged_id"])
    op.create_table(
        "match_suggestions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("customer_a", sa.String(40), nullable=False),
        sa.Column("customer_b", sa.String(40), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("probability", sa.Float(), nullable=True),
        sa.Column("weight", sa.Float(), nullable=True),
        sa.Column("features", sa.JSON(), nullable=True),
        sa.Column("evidence_event_id", sa.String(64), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("decided_at", TZ, nullable=True),
        sa.Column("decided_by", sa.String(128), nullable=True),
        sa.Column("decision_reason", sa.String(1000), nullable=True),
        sa.UniqueConstraint("customer_a", "customer_b", name="uq_match_suggestions_pair"),
    )
    op.create_index("ix_match_suggestions_customer_a", "match_suggestions", ["customer_a"])
    op.create_index("ix_match_suggestions_customer_b", "match_suggestions", ["customer_b"])
    op.create_index("ix_match_suggestions_status", "match_suggestions", ["status"])
    op.create_table(
        "blocking_keys",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("customer_id", sa.String(40), primary_key=True),
    )
    op.create_index("ix_blocking_keys_customer_id", "blocking_keys", ["customer_id"])
    op.create_table(
        "consents",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("customer_id", sa.String(40), nullable=False),
        sa.Column("origin_customer_id", sa.String(40), nullable=False),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("changed_at", TZ, nullable=False),
        sa.Column("recorded_at", TZ, nullable=False),
        sa.Column("actor", sa.String(128), nullable=True),
        sa.Column("reason", sa.String(1000), nullable=True),
    )
    op.create_index("ix_consents_customer_purpose", "consents", ["customer_id", "purpose"])
    op.create_table(
        "erasures",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("customer_id", sa.String(40), nullable=False),
        sa.Column("merged_ids", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("requested_at", TZ, nullable=False),
        sa.Column("requested_by", sa.String(128), nullable=False),
        sa.Column("reason", sa.String(1000), nullable=True),
        sa.Column("expected", sa.JSON(), nullable=True),
        sa.Column("completions", sa.JSON(), nullable=True),
        sa.Column("completed_at", TZ, nullable=True),
    )
    op.create_index("ix_erasures_customer_id", "erasures", ["customer_id"])
    op.create_table(
        "suppressions",
        sa.Column("hash", sa.String(64), primary_key=True),
        sa.Column("erasure_id", sa.String(40), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", TZ, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("customer_id", sa.String(40), nullable=True),
        sa.Column("reason", sa.String(1000), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_action", "audit_log", ["action"])
    op.create_index("ix_audit_log_customer_id", "audit_log", ["customer_id"])


def downgrade() -> None:
    for table in ("audit_log", "suppressions", "erasures", "consents", "blocking_keys", "match_suggestions",
                  "merges", "timeline", "identifiers", "customers"):
        op.drop_table(table)
