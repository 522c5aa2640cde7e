"""article gaps

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 13:48:40.695727
"""

from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('gap_questions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('source_id', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.String(length=16), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('visitor_id', sa.String(length=36), nullable=True),
    sa.Column('conversation_id', sa.String(length=36), nullable=True),
    sa.Column('ticket_id', sa.BigInteger(), nullable=True),
    sa.Column('priority', sa.String(length=4), nullable=True),
    sa.Column('locale', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('embedding', sa.LargeBinary(), nullable=True),
    sa.Column('embedder', sa.String(length=16), nullable=True),
    sa.Column('gap_id', sa.String(length=32), nullable=True),
    sa.Column('placed', sa.String(length=8), nullable=True),
    sa.Column('rejected_article_id', sa.String(length=64), nullable=True),
    sa.Column('matched_article_id', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_gap_questions')),
    sa.UniqueConstraint('source', 'source_id', name='uq_gap_questions_source')
    )
    with op.batch_alter_table('gap_questions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_gap_questions_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_gap_questions_gap_id'), ['gap_id'], unique=False)

    op.create_table('gaps',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('label', sa.String(length=300), nullable=False),
    sa.Column('terms', sa.JSON(), nullable=False),
    sa.Column('merged_into', sa.String(length=32), nullable=True),
    sa.Column('centroid', sa.LargeBinary(), nullable=True),
    sa.Column('embedder', sa.String(length=16), nullable=True),
    sa.Column('volume', sa.Integer(), nullable=False),
    sa.Column('questions', sa.Integer(), nullable=False),
    sa.Column('current', sa.Integer(), nullable=False),
    sa.Column('previous', sa.Integer(), nullable=False),
    sa.Column('trend', sa.Float(), nullable=False),
    sa.Column('priority_mix', sa.JSON(), nullable=False),
    sa.Column('impact', sa.Float(), nullable=False),
    sa.Column('examples', sa.JSON(), nullable=False),
    sa.Column('article_id', sa.String(length=64), nullable=True),
    sa.Column('article_similarity', sa.Float(), nullable=True),
    sa.Column('draft_article_id', sa.String(length=64), nullable=True),
    sa.Column('covered_share', sa.Float(), nullable=True),
    sa.Column('coverage_checked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('status_by', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_gaps'))
    )
    with op.batch_alter_table('gaps', schema=None) as batch_op:
        batch_op.create_index('ix_gaps_status_impact', ['status', 'impact'], unique=False)

    # ### end Alembic commands ###


def downgrade() -> None:
    with op.batch_alter_table('gaps', schema=None) as batch_op:
        batch_op.drop_index('ix_gaps_status_impact')

    op.drop_table('gaps')
    with op.batch_alter_table('gap_questions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_gap_questions_gap_id'))
        batch_op.drop_index(batch_op.f('ix_gap_questions_created_at'))

    op.drop_table('gap_questions')
    # ### end Alembic commands ###
