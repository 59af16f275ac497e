"""customer care tables: cases, threads, messages, history, configuration and replicas

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
import sqlmodel  # noqa: F401
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('care_advocate_topics',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('advocate_id', sa.String(length=128), nullable=False),
    sa.Column('topic', sa.String(length=64), nullable=False),
    sa.Column('accepted_answers', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('advocate_id', 'topic')
    )
    op.create_index(op.f('ix_care_advocate_topics_advocate_id'), 'care_advocate_topics', ['advocate_id'], unique=False)
    op.create_index(op.f('ix_care_advocate_topics_topic'), 'care_advocate_topics', ['topic'], unique=False)
    op.create_table('care_agents',
    sa.Column('id', sa.String(length=128), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('queues', sa.JSON(), nullable=False),
    sa.Column('skills', sa.JSON(), nullable=False),
    sa.Column('languages', sa.JSON(), nullable=False),
    sa.Column('capacity', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('lead', sa.Boolean(), nullable=False),
    sa.Column('last_assigned_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('care_calendars',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('hours', sa.JSON(), nullable=False),
    sa.Column('holiday_country', sa.String(length=8), nullable=True),
    sa.Column('holiday_subdiv', sa.String(length=16), nullable=True),
    sa.Column('extra_holidays', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('care_canned_responses',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('body', sa.String(length=5000), nullable=False),
    sa.Column('language', sa.String(length=16), nullable=True),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('care_case_activity',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.String(length=64), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_care_case_activity_case_id'), 'care_case_activity', ['case_id'], unique=False)
    op.create_table('care_case_messages',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('case_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('author_id', sa.String(length=128), nullable=True),
    sa.Column('author_kind', sa.String(length=16), nullable=False),
    sa.Column('public', sa.Boolean(), nullable=False),
    sa.Column('state', sa.String(length=24), nullable=False),
    sa.Column('text', sa.String(length=10000), nullable=True),
    sa.Column('interaction_id', sa.String(length=128), nullable=True),
    sa.Column('external_id', sa.String(length=256), nullable=True),
    sa.Column('accepted', sa.Boolean(), nullable=False),
    sa.Column('approved_by', sa.String(length=128), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_care_case_messages_case_id'), 'care_case_messages', ['case_id'], unique=False)
    op.create_table('care_case_threads',
    sa.Column('key', sa.String(length=300), nullable=False),
    sa.Column('case_id', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_index(op.f('ix_care_case_threads_case_id'), 'care_case_threads', ['case_id'], unique=False)
    op.create_table('care_cases',
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('customer_id', sa.String(length=128), nullable=False),
    sa.Column('merged_from', sa.String(length=128), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('topic', sa.String(length=64), nullable=False),
    sa.Column('channel', sa.String(length=64), nullable=False),
    sa.Column('language', sa.String(length=16), nullable=True),
    sa.Column('intents', sa.JSON(), nullable=False),
    sa.Column('tracked_topics', sa.JSON(), nullable=False),
    sa.Column('opened_from', sa.String(length=16), nullable=False),
    sa.Column('interaction_id', sa.String(length=128), nullable=True),
    sa.Column('rule', sa.String(length=64), nullable=True),
    sa.Column('public', sa.Boolean(), nullable=False),
    sa.Column('subject', sa.String(length=500), nullable=True),
    sa.Column('customer_name', sa.String(length=200), nullable=True),
    sa.Column('customer_handle', sa.String(length=200), nullable=True),
    sa.Column('followers', sa.Integer(), nullable=True),
    sa.Column('sentiment_score', sa.Float(), nullable=True),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('priority_label', sa.String(length=16), nullable=False),
    sa.Column('priority_factors', sa.JSON(), nullable=False),
    sa.Column('queue', sa.String(length=64), nullable=False),
    sa.Column('assignee_id', sa.String(length=128), nullable=True),
    sa.Column('assignee_kind', sa.String(length=16), nullable=True),
    sa.Column('last_agent_id', sa.String(length=128), nullable=True),
    sa.Column('advocate_id', sa.String(length=128), nullable=True),
    sa.Column('advocate_offer_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('sla_policy', sa.String(length=64), nullable=False),
    sa.Column('first_response_due', sa.DateTime(timezone=True), nullable=True),
    sa.Column('next_response_due', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolution_due', sa.DateTime(timezone=True), nullable=True),
    sa.Column('sla_clock', sa.JSON(), nullable=False),
    sa.Column('sla_next_check', sa.DateTime(timezone=True), nullable=True),
    sa.Column('sla_warnings', sa.JSON(), nullable=False),
    sa.Column('sla_breaches', sa.JSON(), nullable=False),
    sa.Column('escalated', sa.Boolean(), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('first_responded_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('awaiting_since', sa.DateTime(timezone=True), nullable=True),
    sa.Column('responses', sa.Integer(), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolution', sa.String(length=64), nullable=True),
    sa.Column('resolver_id', sa.String(length=128), nullable=True),
    sa.Column('resolved_by_advocate', sa.Boolean(), nullable=False),
    sa.Column('reopen_count', sa.Integer(), nullable=False),
    sa.Column('csat_score', sa.Integer(), nullable=True),
    sa.Column('csat_comment', sa.String(length=2000), nullable=True),
    sa.Column('erased', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('number'),
    sa.UniqueConstraint('id')
    )
    op.create_index('ix_care_cases_assignee_status', 'care_cases', ['assignee_id', 'status'], unique=False)
    op.create_index(op.f('ix_care_cases_customer_id'), 'care_cases', ['customer_id'], unique=False)
    op.create_index('ix_care_cases_customer_topic_status', 'care_cases', ['customer_id', 'topic', 'status'], unique=False)
    op.create_index('ix_care_cases_queue_status_priority', 'care_cases', ['queue', 'status', 'priority'], unique=False)
    op.create_index(op.f('ix_care_cases_sla_next_check'), 'care_cases', ['sla_next_check'], unique=False)
    op.create_index(op.f('ix_care_cases_status'), 'care_cases', ['status'], unique=False)
    op.create_table('care_crises',
    sa.Column('alert_id', sa.String(length=128), nullable=False),
    sa.Column('topic', sa.String(length=200), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('raised_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('alert_id')
    )
    op.create_index(op.f('ix_care_crises_topic'), 'care_crises', ['topic'], unique=False)
    op.create_table('care_customer_facts',
    sa.Column('customer_id', sa.String(length=128), nullable=False),
    sa.Column('lifetime_value', sa.Float(), nullable=False),
    sa.Column('orders', sa.Integer(), nullable=False),
    sa.Column('advocate_tier', sa.String(length=16), nullable=False),
    sa.Column('advocate_flagged', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('customer_id')
    )
    op.create_table('care_erasures',
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('erasure_id', sa.String(length=128), nullable=False),
    sa.Column('erased_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('cases', sa.Integer(), nullable=False),
    sa.Column('records_purged', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('digest')
    )
    op.create_table('care_leads',
    sa.Column('lead_id', sa.String(length=128), nullable=False),
    sa.Column('customer_id', sa.String(length=128), nullable=False),
    sa.Column('stage', sa.String(length=16), nullable=False),
    sa.PrimaryKeyConstraint('lead_id')
    )
    op.create_index(op.f('ix_care_leads_customer_id'), 'care_leads', ['customer_id'], unique=False)
    op.create_table('care_queues',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('channels', sa.JSON(), nullable=False),
    sa.Column('languages', sa.JSON(), nullable=False),
    sa.Column('skills', sa.JSON(), nullable=False),
    sa.Column('policy', sa.String(length=16), nullable=False),
    sa.Column('escalation_queue', sa.String(length=64), nullable=True),
    sa.Column('last_agent_id', sa.String(length=128), nullable=True),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('care_rules',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('intents', sa.JSON(), nullable=False),
    sa.Column('channels', sa.JSON(), nullable=False),
    sa.Column('keywords', sa.JSON(), nullable=False),
    sa.Column('min_priority', sa.Integer(), nullable=False),
    sa.Column('topic', sa.String(length=64), nullable=False),
    sa.Column('queue', sa.String(length=64), nullable=True),
    sa.Column('sla_policy', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('care_sla_policies',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('first_response_s', sa.Integer(), nullable=False),
    sa.Column('next_response_s', sa.Integer(), nullable=False),
    sa.Column('resolution_s', sa.Integer(), nullable=False),
    sa.Column('calendar', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )


def downgrade() -> None:
    op.drop_table('care_sla_policies')
    op.drop_table('care_rules')
    op.drop_table('care_queues')
    op.drop_index(op.f('ix_care_leads_customer_id'), table_name='care_leads')
    op.drop_table('care_leads')
    op.drop_table('care_erasures')
    op.drop_table('care_customer_facts')
    op.drop_index(op.f('ix_care_crises_topic'), table_name='care_crises')
    op.drop_table('care_crises')
    op.drop_index(op.f('ix_care_cases_status'), table_name='care_cases')
    op.drop_index(op.f('ix_care_cases_sla_next_check'), table_name='care_cases')
    op.drop_index('ix_care_cases_queue_status_priority', table_name='care_cases')
    op.drop_index('ix_care_cases_customer_topic_status', table_name='care_cases')
    op.drop_index(op.f('ix_care_cases_customer_id'), table_name='care_cases')
    op.drop_index('ix_care_cases_assignee_status', table_name='care_cases')
    op.drop_table('care_cases')
    op.drop_index(op.f('ix_care_case_threads_case_id'), table_name='care_case_threads')
    op.drop_table('care_case_threads')
    op.drop_index(op.f('ix_care_case_messages_case_id'), table_name='care_case_messages')
    op.drop_table('care_case_messages')
    op.drop_index(op.f('ix_care_case_activity_case_id'), table_name='care_case_activity')
    op.drop_table('care_case_activity')
    op.drop_table('care_canned_responses')
    op.drop_table('care_calendars')
    op.drop_table('care_agents')
    op.drop_index(op.f('ix_care_advocate_topics_topic'), table_name='care_advocate_topics')
    op.drop_index(op.f('ix_care_advocate_topics_advocate_id'), table_name='care_advocate_topics')
    op.drop_table('care_advocate_topics')
