"""help center feedback and unanswered questions

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 11:07:50.114277
"""

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('article_feedback',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('conversation_id', sa.String(length=36), nullable=False),
    sa.Column('suggestion_seq', sa.BigInteger(), nullable=False),
    sa.Column('article_id', sa.String(length=64), nullable=False),
    sa.Column('helpful', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], name=op.f('fk_article_feedback_conversation_id_conversations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_article_feedback')),
    sa.UniqueConstraint('conversation_id', 'suggestion_seq', 'article_id', name='uq_article_feedback_once')
    )
    with op.batch_alter_table('article_feedback', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_article_feedback_article_id'), ['article_id'], unique=False)

    op.create_table('unanswered_questions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('conversation_id', sa.String(length=36), nullable=True),
    sa.Column('visitor_id', sa.String(length=36), nullable=True),
    sa.Column('question_seq', sa.BigInteger(), nullable=True),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('reason', sa.String(length=16), nullable=False),
    sa.Column('article_id', sa.String(length=64), nullable=True),
    sa.Column('best_score', sa.Float(), nullable=True),
    sa.Column('locale', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], name=op.f('fk_unanswered_questions_conversation_id_conversations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_unanswered_questions'))
    )
    with op.batch_alter_table('unanswered_questions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_unanswered_questions_conversation_id'), ['conversation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_unanswered_questions_created_at'), ['created_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('unanswered_questions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_unanswered_questions_created_at'))
        batch_op.drop_index(batch_op.f('ix_unanswered_questions_conversation_id'))

    op.drop_table('unanswered_questions')
    with op.batch_alter_table('article_feedback', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_article_feedback_article_id'))

    op.drop_table('article_feedback')
