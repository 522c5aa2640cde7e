"""nodes and visitor sessions

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 11:42:17.603351
"""

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('nodes',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_nodes'))
    )
    op.create_table('visitor_sessions',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('conversation_id', sa.String(length=36), nullable=False),
    sa.Column('node', sa.String(length=64), nullable=False),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], name=op.f('fk_visitor_sessions_conversation_id_conversations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_visitor_sessions'))
    )
    with op.batch_alter_table('visitor_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_visitor_sessions_conversation_id'), ['conversation_id'], unique=False)

    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('visitor_seen_at', sa.DateTime(timezone=True), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.drop_column('visitor_seen_at')

    with op.batch_alter_table('visitor_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_visitor_sessions_conversation_id'))

    op.drop_table('visitor_sessions')
    op.drop_table('nodes')
