"""round-robin pointers of every queue (also those without a care_queues row)

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('care_round_robin',
    sa.Column('queue', sa.String(length=64), nullable=False),
    sa.Column('last_agent_id', sa.String(length=128), nullable=True),
    sa.PrimaryKeyConstraint('queue')
    )
    # the pointers configured queues had so far
    op.execute("INSERT INTO care_round_robin (queue, last_agent_id) "
               "SELECT name, last_agent_id FROM care_queues WHERE last_agent_id IS NOT NULL")


def downgrade() -> None:
    op.drop_table('care_round_robin')
