"""tickets

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 11:33:59.174382
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('tickets',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('subject', sa.String(length=300), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('priority', sa.String(length=4), nullable=False),
    sa.Column('category', sa.String(length=64), nullable=True),
    sa.Column('triage', sa.JSON(), nullable=True),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('customer_name', sa.String(length=200), nullable=True),
    sa.Column('customer_email', sa.String(length=320), nullable=True),
    sa.Column('plan', sa.String(length=64), nullable=True),
    sa.Column('community', sa.String(length=200), nullable=True),
    sa.Column('visitor_id', sa.String(length=36), nullable=True),
    sa.Column('conversation_id', sa.String(length=36), nullable=True),
    sa.Column('assignee_id', sa.String(length=36), nullable=True),
    sa.Column('escalation_level', sa.String(length=16), nullable=False),
    sa.Column('sla_policy', sa.String(length=32), nullable=False),
    sa.Column('merged_into', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('first_response_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('pending_since', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reminded_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('paused', sa.JSON(), nullable=False),
    sa.Column('first_response_breached_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolution_breached_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['assignee_id'], ['agents.id'], name=op.f('fk_tickets_assignee_id_agents')),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], name=op.f('fk_tickets_conversation_id_conversations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tickets')),
    sa.UniqueConstraint('conversation_id', name=op.f('uq_tickets_conversation_id'))
    )
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tickets_assignee_id'), ['assignee_id'], unique=False)
        batch_op.create_index('ix_tickets_status_priority', ['status', 'priority'], unique=False)
        batch_op.create_index(batch_op.f('ix_tickets_visitor_id'), ['visitor_id'], unique=False)

    op.create_table('outbound_messages',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('ticket_id', sa.BigInteger(), nullable=False),
    sa.Column('to_email', sa.String(length=320), nullable=True),
    sa.Column('subject', sa.String(length=300), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_outbound_messages_ticket_id_tickets')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbound_messages'))
    )
    with op.batch_alter_table('outbound_messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outbound_messages_ticket_id'), ['ticket_id'], unique=False)

    op.create_table('ticket_audit',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('ticket_id', sa.BigInteger(), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('actor_id', sa.String(length=36), nullable=True),
    sa.Column('actor_name', sa.String(length=200), nullable=True),
    sa.Column('data', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_ticket_audit_ticket_id_tickets')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ticket_audit'))
    )
    with op.batch_alter_table('ticket_audit', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ticket_audit_ticket_id'), ['ticket_id'], unique=False)

    op.create_table('ticket_entries',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('ticket_id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('author_id', sa.String(length=36), nullable=True),
    sa.Column('author_name', sa.String(length=200), nullable=True),
    sa.Column('text', sa.Text(), nullable=True),
    sa.Column('internal', sa.Boolean(), nullable=False),
    sa.Column('data', sa.JSON(), nullable=True),
    sa.Column('source', sa.String(length=64), nullable=True),
    sa.Column('delivery', sa.String(length=16), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_ticket_entries_ticket_id_tickets')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ticket_entries')),
    sa.UniqueConstraint('ticket_id', 'source', name='uq_ticket_entries_source')
    )
    with op.batch_alter_table('ticket_entries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ticket_entries_ticket_id'), ['ticket_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('ticket_entries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ticket_entries_ticket_id'))

    op.drop_table('ticket_entries')
    with op.batch_alter_table('ticket_audit', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ticket_audit_ticket_id'))

    op.drop_table('ticket_audit')
    with op.batch_alter_table('outbound_messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbound_messages_ticket_id'))

    op.drop_table('outbound_messages')
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tickets_visitor_id'))
        batch_op.drop_index('ix_tickets_status_priority')
        batch_op.drop_index(batch_op.f('ix_tickets_assignee_id'))

    op.drop_table('tickets')
