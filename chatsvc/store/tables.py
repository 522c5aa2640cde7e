"""The store's tables (SQLAlchemy Core). Alembic migrations in chatsvc/store/migrations create them."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Small key/value facts the service keeps for itself (the generated secret key).
kv = Table(
    "kv",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

visitors = Table(
    "visitors",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("site_key", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("name", String(200)),
    Column("email", String(320)),
    Column("plan", String(64)),
    Column("community", String(200)),
    Column("verified", Boolean, nullable=False, default=False),
)

agents = Table(
    "agents",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("email", String(320), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("token_hash", String(64), unique=True),
    Column("password_hash", String(255)),
    Column("presence", String(16), nullable=False, default="offline"),
    Column("capacity", Integer, nullable=False),
    Column("skills", JSON, nullable=False, default=list),
    Column("languages", JSON, nullable=False, default=list),
    Column("last_assigned_at", DateTime(timezone=True)),
    Column("last_seen_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

conversations = Table(
    "conversations",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("visitor_id", String(36), ForeignKey("visitors.id"), nullable=False, index=True),
    Column("site_key", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("agent_id", String(36), ForeignKey("agents.id"), index=True),
    Column("last_seq", BigInteger, nullable=False, default=0),
    Column("visitor_read_seq", BigInteger, nullable=False, default=0),
    Column("agent_read_seq", BigInteger, nullable=False, default=0),
    Column("first_question", Text),
    Column("email", String(320)),
    Column("language", String(16)),
    Column("category", String(64)),
    Column("priority", String(4)),
    Column("resolution", String(64)),
    Column("ticket_id", String(36)),
    # The offer now pending for this conversation; a conditional update on it makes dispatch race-free.
    Column("offer_id", String(36)),
    Column("waiting_since", DateTime(timezone=True)),
    Column("visitor_seen_at", DateTime(timezone=True)),  # when the visitor's last socket closed
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True)),
    Index("ix_conversations_state_waiting", "state", "waiting_since"),
)

# Every durable thing that happens in a conversation, numbered per conversation.
events = Table(
    "events",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("conversation_id", String(36), ForeignKey("conversations.id"), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("role", String(16), nullable=False),
    Column("author_id", String(36)),
    Column("author_name", String(200)),
    Column("text", Text),
    Column("client_id", String(64)),
    Column("internal", Boolean, nullable=False, default=False),
    Column("data", JSON),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("conversation_id", "seq", name="uq_events_conversation_seq"),
    UniqueConstraint("conversation_id", "client_id", name="uq_events_conversation_client_id"),
)

offers = Table(
    "offers",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("conversation_id", String(36), ForeignKey("conversations.id"), nullable=False, index=True),
    Column("agent_id", String(36), ForeignKey("agents.id"), nullable=False, index=True),
    Column("status", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("closed_at", DateTime(timezone=True)),
    Index("ix_offers_status_expires", "status", "expires_at"),
)

# One row per running server process, refreshed every sweep: a session whose process stopped
# refreshing is gone, without a heartbeat per connection.
nodes = Table(
    "nodes",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False),
)

# One row per open visitor websocket, so any process can tell that a waiting visitor has left.
visitor_sessions = Table(
    "visitor_sessions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("conversation_id", String(36), ForeignKey("conversations.id"), nullable=False, index=True),
    Column("node", String(64), nullable=False),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False),
)

# One row per open agent websocket, kept fresh by heartbeats, so any process can tell an agent is gone.
agent_sessions = Table(
    "agent_sessions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("agent_id", String(36), ForeignKey("agents.id"), nullable=False, index=True),
    Column("node", String(64), nullable=False),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False),
)

articles = Table(
    "articles",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("title", String(300), nullable=False),
    Column("body", Text, nullable=False),
    Column("tags", JSON, nullable=False, default=list),
    Column("locale", String(16), nullable=False, default="en"),
    Column("slug", String(200), nullable=False),
    Column("status", String(16), nullable=False, default="draft"),
    Column("helpful", Integer, nullable=False, default=0),
    Column("unhelpful", Integer, nullable=False, default=0),
    Column("version", Integer, nullable=False, default=1),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# The visitor's "Did this answer your question?" per suggested article.
article_feedback = Table(
    "article_feedback",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("conversation_id", String(36), ForeignKey("conversations.id"), nullable=False),
    Column("suggestion_seq", BigInteger, nullable=False),
    Column("article_id", String(64), nullable=False, index=True),
    Column("helpful", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("conversation_id", "suggestion_seq", "article_id", name="uq_article_feedback_once"),
)

# Questions no article answered: the input of article-gap detection.
unanswered_questions = Table(
    "unanswered_questions",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("conversation_id", String(36), ForeignKey("conversations.id"), index=True),
    Column("visitor_id", String(36)),
    Column("question_seq", BigInteger),
    Column("text", Text, nullable=False),
    Column("reason", String(16), nullable=False),  # no_match | unhelpful
    Column("article_id", String(64)),
    Column("best_score", Float),
    Column("locale", String(16), nullable=False, default="en"),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
)

# Tickets. The integer id is the number customers and agents quote (#1042).
tickets = Table(
    "tickets",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("subject", String(300), nullable=False),
    Column("status", String(20), nullable=False),
    Column("priority", String(4), nullable=False),
    Column("category", String(64)),
    Column("triage", JSON),  # why this priority and category: rule, model, default
    Column("channel", String(16), nullable=False),  # chat | form | agent | email | phone
    Column("customer_name", String(200)),
    Column("customer_email", String(320)),
    Column("plan", String(64)),
    Column("community", String(200)),
    Column("visitor_id", String(36), index=True),
    # Unique: a conversation converts at most once, whatever races.
    Column("conversation_id", String(36), ForeignKey("conversations.id"), unique=True),
    Column("assignee_id", String(36), ForeignKey("agents.id"), index=True),
    Column("escalation_level", String(16), nullable=False, default="l1"),
    Column("sla_policy", String(32), nullable=False, default="lotwize"),
    Column("merged_into", BigInteger),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("first_response_at", DateTime(timezone=True)),
    Column("resolved_at", DateTime(timezone=True)),
    Column("closed_at", DateTime(timezone=True)),
    Column("pending_since", DateTime(timezone=True)),
    Column("reminded_at", DateTime(timezone=True)),
    Column("paused", JSON, nullable=False, default=list),  # [[start, end], ...] spent in pending_customer
    # When each SLA timer was first seen breached: recorded once, by whichever process saw it first.
    Column("first_response_breached_at", DateTime(timezone=True)),
    Column("resolution_breached_at", DateTime(timezone=True)),
    Index("ix_tickets_status_priority", "status", "priority"),
)

# The thread of a ticket: the chat transcript, replies, customer messages, internal notes.
ticket_entries = Table(
    "ticket_entries",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("ticket_id", BigInteger, ForeignKey("tickets.id"), nullable=False, index=True),
    Column("kind", String(16), nullable=False),  # message | reply | note | system
    Column("role", String(16), nullable=False),  # visitor | agent | bot | system
    Column("author_id", String(36)),
    Column("author_name", String(200)),
    Column("text", Text),
    Column("internal", Boolean, nullable=False, default=False),
    Column("data", JSON),
    Column("source", String(64)),  # "conv:<id>:<seq>" for transcript lines, so a line is copied once
    Column("delivery", String(16)),  # for replies: widget | email | pending
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("ticket_id", "source", name="uq_ticket_entries_source"),
)

# Append-only: every action on a ticket, who did it and what changed.
ticket_audit = Table(
    "ticket_audit",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("ticket_id", BigInteger, ForeignKey("tickets.id"), nullable=False, index=True),
    Column("action", String(32), nullable=False),
    Column("actor_id", String(36)),
    Column("actor_name", String(200)),
    Column("data", JSON),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Messages for customers who are not online, through the pluggable outbound channel.
outbound_messages = Table(
    "outbound_messages",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("ticket_id", BigInteger, ForeignKey("tickets.id"), nullable=False, index=True),
    Column("to_email", String(320)),
    Column("subject", String(300), nullable=False),
    Column("body", Text, nullable=False),
    Column("status", String(16), nullable=False),  # pending | sent | failed
    Column("channel", String(32), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True)),
)

# Customer satisfaction: one answer per ticket or conversation (the last answer counts).
csat_responses = Table(
    "csat_responses",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("ticket_id", BigInteger, ForeignKey("tickets.id"), unique=True),
    Column("conversation_id", String(36), ForeignKey("conversations.id"), unique=True),
    Column("agent_id", String(36)),
    Column("rating", String(8), nullable=False),  # good | okay | bad
    Column("comment", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

webhooks = Table(
    "webhooks",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("url", String(2000), nullable=False),
    Column("secret", String(200), nullable=False),
    Column("events", JSON, nullable=False),  # ["ticket.created", ...]
    Column("active", Boolean, nullable=False, default=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# The delivery log: one row per event and hook, retried with backoff until delivered or given up.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("webhook_id", String(36), ForeignKey("webhooks.id"), nullable=False, index=True),
    Column("event", String(64), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("status", String(16), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("delivered_at", DateTime(timezone=True)),
    Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
)

# Custom macros (the six built-in ones live in code).
macros = Table(
    "macros",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_by", String(36)),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Console log-ins: the cookie carries a random token, the store keeps only its SHA-256. Logging out or changing
# the password deletes rows, which ends those sessions in every server process at once.
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("id", String(64), primary_key=True),  # sha256 hex of the cookie token
    Column("agent_id", String(36), ForeignKey("agents.id"), nullable=False, index=True),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
    Column("user_agent", String(300)),
    Column("ip", String(64)),
)

# Failed console log-ins, for throttling guesses in every server process. Keyed by the SHA-256 of the
# lower-cased e-mail (whether or not such an agent exists) and by the client address.
console_login_failures = Table(
    "console_login_failures",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("email_key", String(64), nullable=False),
    Column("ip", String(64)),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ix_console_login_failures_email_key_at", "email_key", "at"),
    Index("ix_console_login_failures_ip_at", "ip", "at"),
)

# Article gaps: topics of questions no article answered (chatsvc/gaps). The id stays the same across
# re-clusterings while the topic does, so a dismissal, a merge or a draft sticks to it.
gaps = Table(
    "gaps",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("status", String(16), nullable=False),  # open | dismissed | merged
    Column("label", String(300), nullable=False),
    Column("terms", JSON, nullable=False, default=list),
    Column("merged_into", String(32)),
    Column("centroid", LargeBinary),  # float16, in the vectors of `embedder`
    Column("embedder", String(16)),
    Column("volume", Integer, nullable=False, default=0),  # distinct askers
    Column("questions", Integer, nullable=False, default=0),
    Column("current", Integer, nullable=False, default=0),  # askers in the last period
    Column("previous", Integer, nullable=False, default=0),  # askers in the period before
    Column("trend", Float, nullable=False, default=1.0),
    Column("priority_mix", JSON, nullable=False, default=dict),
    Column("impact", Float, nullable=False, default=0.0),
    Column("examples", JSON, nullable=False, default=list),  # ids of the representative questions
    Column("article_id", String(64)),  # the nearest published article
    Column("article_similarity", Float),
    Column("draft_article_id", String(64)),  # the article written for this gap
    Column("covered_share", Float),  # share of the gap's questions that an article now answers
    Column("coverage_checked_at", DateTime(timezone=True)),
    Column("status_by", String(200)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_gaps_status_impact", "status", "impact"),
)

# The questions gap detection works on: one row per unanswered question or article-less closed ticket.
gap_questions = Table(
    "gap_questions",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("source", String(16), nullable=False),  # unanswered | ticket
    Column("source_id", String(64), nullable=False),
    Column("reason", String(16), nullable=False),  # no_match | unhelpful | ticket
    Column("text", Text, nullable=False),
    Column("visitor_id", String(36)),
    Column("conversation_id", String(36)),
    Column("ticket_id", BigInteger),
    Column("priority", String(4)),
    Column("locale", String(16), nullable=False, default="en"),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("embedding", LargeBinary),
    Column("embedder", String(16)),
    Column("gap_id", String(32), index=True),
    Column("placed", String(8)),  # cluster | attach | noise; null: not looked at yet
    Column("rejected_article_id", String(64)),  # the article the visitor marked unhelpful
    Column("matched_article_id", String(64)),  # the article that answers it now, after a coverage check
    UniqueConstraint("source", "source_id", name="uq_gap_questions_source"),
)
