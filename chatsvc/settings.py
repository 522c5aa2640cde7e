"""Settings: one table of environment variables, each overridable by a `chatsvc serve` flag.

docs/configuration.md lists them; a test keeps that table and `FIELDS` in step. Each default is
stated once, on the `Settings` dataclass.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Field:
    name: str
    env: str
    help: str

    @property
    def default(self) -> object:
        """The default is stated once, on the Settings dataclass below."""
        return _DEFAULTS[self.name]


FIELDS: tuple[Field, ...] = (
    Field("database_url", "CHATSVC_DATABASE_URL",
          "SQLAlchemy URL of the store: a SQLite file (default) or postgresql+asyncpg://user@host/db."),
    Field("redis_url", "CHATSVC_REDIS_URL",
          "Broker between server processes; empty means in-process (one server process only)."),
    Field("allowed_origins", "CHATSVC_ALLOWED_ORIGINS",
          "Comma-separated origins allowed on /ws/visitor; `self` is the server's own origin, `*` any."),
    Field("secret_key", "CHATSVC_SECRET_KEY",
          "Signs visitor tokens. Empty: a random key is created once and kept in the database."),
    Field("identity_secret", "CHATSVC_IDENTITY_SECRET",
          "Shared with the site's backend, which signs visitor identity (name, email, plan) with HMAC-SHA256."),
    Field("identity_required", "CHATSVC_IDENTITY_REQUIRED",
          "Refuse visitor identity that is not signed with the identity secret."),
    Field("max_frame_bytes", "CHATSVC_MAX_FRAME_BYTES",
          "Largest websocket frame accepted; larger frames close the socket with 1009."),
    Field("max_message_chars", "CHATSVC_MAX_MESSAGE_CHARS",
          "Longest chat message text; longer ones get the error `too_long`."),
    Field("group_commit", "CHATSVC_GROUP_COMMIT",
          "The live-chat hot path straight on the driver: group-committed batches on SQLite, one or two "
          "prepared statements per step on PostgreSQL (asyncpg); `false`: everything through SQLAlchemy."),
    Field("rate_per_second", "CHATSVC_RATE_PER_SECOND",
          "Frames per second each connection may send on average."),
    Field("rate_burst", "CHATSVC_RATE_BURST",
          "Frames a connection may send at once before the rate applies."),
    Field("offer_timeout", "CHATSVC_OFFER_TIMEOUT",
          "Seconds an agent has to accept an offer before it passes to the next agent."),
    Field("wait_timeout", "CHATSVC_WAIT_TIMEOUT",
          "Seconds a conversation may wait for an agent before it is handed to ticket conversion."),
    Field("agent_capacity", "CHATSVC_AGENT_CAPACITY",
          "Default number of concurrent chats an agent is offered."),
    Field("agent_grace", "CHATSVC_AGENT_GRACE",
          "Seconds an agent may be disconnected before their chats are offered to others."),
    Field("visitor_grace", "CHATSVC_VISITOR_GRACE",
          "Seconds a waiting visitor may be gone (no open tab) before the chat becomes a ticket."),
    Field("sla_policy", "CHATSVC_SLA_POLICY",
          "SLA preset for new tickets: lotwize or kamflo (docs/tickets-rules.md)."),
    Field("subscriber_queue", "CHATSVC_SUBSCRIBER_QUEUE",
          "Bound of each connection's outgoing event queue; a consumer that falls further behind is closed (4008)."),
    Field("ping_interval", "CHATSVC_PING_INTERVAL",
          "Seconds between websocket keep-alive pings; a client that does not answer within as long is closed (1011)."),
    Field("sweep_interval", "CHATSVC_SWEEP_INTERVAL",
          "Seconds between sweeps for expired offers, wait timeouts and lost agents."),
    Field("drain_delay", "CHATSVC_DRAIN_DELAY",
          "On SIGTERM, seconds /readyz answers 503 before the open sockets are closed (for load balancers "
          "that poll it)."),
    Field("drain_timeout", "CHATSVC_DRAIN_TIMEOUT",
          "On SIGTERM, seconds to wait for the sockets closed with 1001 (going away) before stopping anyway."),
    Field("sites_file", "CHATSVC_SITES_FILE",
          "TOML file of sites that embed the widget (key, colours, greeting, strings); empty: the built-in demo site."),
    Field("console_session_hours", "CHATSVC_CONSOLE_SESSION_HOURS",
          "Hours a console log-in lasts; logging out or changing the password ends it sooner."),
    Field("login_attempts", "CHATSVC_LOGIN_ATTEMPTS",
          "Failed console log-ins allowed per e-mail in 15 minutes (four times as many per client address)."),
    Field("host", "CHATSVC_HOST", "Address to listen on."),
    Field("port", "CHATSVC_PORT", "Port to listen on."),
    Field("public_url", "CHATSVC_PUBLIC_URL",
          "The URL visitors reach the service at (for printed links and the widget); default from host and port."),
    Field("log_level", "CHATSVC_LOG_LEVEL", "debug, info, warning or error."),
    Field("log_format", "CHATSVC_LOG_FORMAT",
          "`text` (one readable line per record) or `json` (one JSON object per line, with request and "
          "conversation ids)."),
    Field("metrics_access", "CHATSVC_METRICS_ACCESS",
          "Who may read /metrics: `loopback` (only from this machine), `token` (with CHATSVC_METRICS_TOKEN) "
          "or `open`."),
    Field("metrics_token", "CHATSVC_METRICS_TOKEN",
          "Bearer token Prometheus sends for /metrics when CHATSVC_METRICS_ACCESS=token."),
    Field("hsts_max_age", "CHATSVC_HSTS_MAX_AGE",
          "Seconds of Strict-Transport-Security to send (only behind HTTPS); 0 sends none."),
    Field("connect_rate", "CHATSVC_CONNECT_RATE",
          "Websocket connections one client address (both endpoints), or one visitor, may open per minute; "
          "0: no limit."),
    Field("visitor_message_rate", "CHATSVC_VISITOR_MESSAGE_RATE",
          "Chat messages one visitor may send per minute, over all their tabs; 0: no limit."),
    Field("ip_message_rate", "CHATSVC_IP_MESSAGE_RATE",
          "Chat messages all visitors behind one client address may send per minute; 0: no limit."),
    Field("contact_rate", "CHATSVC_CONTACT_RATE",
          "Contact-form submissions one client address may send per minute; 0: no limit."),
    Field("rate_limit_exempt", "CHATSVC_RATE_LIMIT_EXEMPT",
          "Comma-separated addresses or networks of trusted clients (health checks, load tests) that skip "
          "the connection, message and contact-form limits."),
    Field("rate_limit_sync", "CHATSVC_RATE_LIMIT_SYNC",
          "With Redis: seconds between the exchanges of rate-limit counts between processes, which make the "
          "limits cluster-wide; 0: each process counts for itself."),
    Field("ticket_retry_interval", "CHATSVC_TICKET_RETRY_INTERVAL",
          "Seconds between passes that convert chats left waiting for their ticket (a conversion that failed); "
          "also how long a chat waits before it is retried. 0: no retry."),
    Field("gaps_embedder", "CHATSVC_GAPS_EMBEDDER",
          "Question vectors for article gaps: `auto` (all-MiniLM-L6-v2 when the `embeddings` extra is "
          "installed, else TF-IDF), `minilm` or `tfidf`."),
    Field("gaps_assign_interval", "CHATSVC_GAPS_ASSIGN_INTERVAL",
          "Seconds between article-gap runs, which attach new questions to the gaps; 0 turns the job off."),
    Field("gaps_recluster_interval", "CHATSVC_GAPS_RECLUSTER_INTERVAL",
          "Seconds between full re-clusterings of the article gaps (done by the next run after it)."),
    Field("models_dir", "CHATSVC_MODELS_DIR",
          "Directory whose classifier/ holds the category and priority model (`chatsvc train --out`); "
          "empty: the shipped models/."),
    Field("classifier_reload_interval", "CHATSVC_CLASSIFIER_RELOAD_INTERVAL",
          "Seconds between checks for a retrained classifier model, which is then loaded without a restart; "
          "0: never."),
)


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite+aiosqlite:///./chatsvc.db"
    redis_url: str = ""
    allowed_origins: str = "self"
    secret_key: str = ""
    identity_secret: str = ""
    identity_required: bool = False
    max_frame_bytes: int = 16384
    max_message_chars: int = 4000
    group_commit: bool = True
    rate_per_second: float = 10.0
    rate_burst: int = 30
    offer_timeout: float = 30.0
    wait_timeout: float = 300.0
    agent_capacity: int = 5
    agent_grace: float = 30.0
    visitor_grace: float = 60.0
    sla_policy: str = "lotwize"
    subscriber_queue: int = 256
    ping_interval: float = 20.0
    sweep_interval: float = 1.0
    drain_delay: float = 0.0
    drain_timeout: float = 10.0
    sites_file: str = ""
    console_session_hours: float = 12.0
    login_attempts: int = 5
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str = ""
    log_level: str = "info"
    log_format: str = "text"
    metrics_access: str = "loopback"
    metrics_token: str = ""
    hsts_max_age: int = 0
    connect_rate: int = 60
    visitor_message_rate: int = 60
    ip_message_rate: int = 600
    contact_rate: int = 5
    rate_limit_exempt: str = "127.0.0.1,::1"
    rate_limit_sync: float = 0.25
    ticket_retry_interval: float = 15.0
    gaps_embedder: str = "auto"
    gaps_assign_interval: float = 300.0
    gaps_recluster_interval: float = 21600.0
    models_dir: str = ""
    classifier_reload_interval: float = 10.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in FIELDS:
            raw = environ.get(field.env)
            if raw is not None and raw != "":
                values[field.name] = _coerce(field, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def origin_allowlist(self) -> tuple[str, ...]:
        return tuple(o.strip().rstrip("/") for o in self.allowed_origins.split(",") if o.strip())

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"


_DEFAULTS: dict[str, object] = {f.name: f.default for f in dataclasses.fields(Settings)}


def _coerce(field: Field, raw: str) -> object:
    default = field.default
    try:
        if isinstance(default, bool):
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError:
        raise ValueError(f"{field.env}={raw!r} is not a valid {type(default).__name__}") from None
    return raw
