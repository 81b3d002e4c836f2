"""staff console: held crisis replies in claimed conversations, first claim/reply times, internal notes

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 08:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('escalations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('held_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('held_reply', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('first_claimed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('first_reply_at', sa.DateTime(timezone=True), nullable=True))
    # Escalations claimed or answered before this migration keep their numbers.
    op.execute("UPDATE escalations SET first_claimed_at = claimed_at WHERE claimed_at IS NOT NULL")
    op.execute("UPDATE escalations SET first_reply_at = (SELECT MIN(m.created_at) FROM messages m "
               "WHERE m.escalation_id = escalations.id AND m.direction = 'out' AND m.kind = 'staff')")
    op.create_table(
        'notes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('escalation_id', sa.Integer(), nullable=False),
        sa.Column('staff_id', sa.Integer(), nullable=True),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['escalation_id'], ['escalations.id'], ),
        sa.ForeignKeyConstraint(['staff_id'], ['staff.id'], ),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('notes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notes_escalation_id'), ['escalation_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('notes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notes_escalation_id'))
    op.drop_table('notes')
    with op.batch_alter_table('escalations', schema=None) as batch_op:
        batch_op.drop_column('first_reply_at')
        batch_op.drop_column('first_claimed_at')
        batch_op.drop_column('held_reply')
        batch_op.drop_column('held_at')
