"""one rate counter for every limit; crisis kinds on escalations and messages

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 07:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'rate_counters',
        sa.Column('limit', sa.String(length=32), nullable=False),
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.Column('window', sa.Integer(), nullable=False),
        sa.Column('count', sa.Integer(), nullable=False),
        sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('limit', 'key', 'window'),
    )
    with op.batch_alter_table('rate_counters', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rate_counters_ends_at'), ['ends_at'], unique=False)
    with op.batch_alter_table('escalations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=16), nullable=True))
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('crisis_kind', sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_column('crisis_kind')
    with op.batch_alter_table('escalations', schema=None) as batch_op:
        batch_op.drop_column('kind')
    with op.batch_alter_table('rate_counters', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rate_counters_ends_at'))
    op.drop_table('rate_counters')
