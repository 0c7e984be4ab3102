"""run_arms: the arms (named methods with options) a run belongs to; students stored before get their method

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 11:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'run_arms',
        sa.Column('run_id', sa.String(length=32), sa.ForeignKey('runs.id', ondelete='CASCADE'), primary_key=True),
        sa.Column('arm', sa.String(length=64), primary_key=True),
    )
    op.create_index('ix_run_arms_arm', 'run_arms', ['arm'])
    op.execute("INSERT INTO run_arms (run_id, arm) SELECT id, method FROM runs WHERE kind = 'student'")


def downgrade() -> None:
    op.drop_index('ix_run_arms_arm', table_name='run_arms')
    op.drop_table('run_arms')
