"""The websocket protocol: every frame as a strict schema, the error codes and the close codes.

docs/protocol.md describes each frame; tests/ws/test_protocol_doc.py keeps the two in step and validates
every frame the server sends against the JSON Schema generated from these classes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

# Bumped with a changelog line in docs/protocol.md whenever a frame or field is added or changed.
PROTOCOL_LEVEL = 3

ClientId = Annotated[str, Meta(min_length=1, max_length=64)]
ConvId = Annotated[str, Meta(min_length=1, max_length=64)]
Seq = Annotated[int, Meta(ge=0, le=2**63 - 1)]  # the store's BIGINT: a larger number is a bad frame, not a crash
Text = Annotated[str, Meta(max_length=100_000)]
Ref = Annotated[str, Meta(max_length=64)]
Email = Annotated[str, Meta(max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
PresenceStatus = Literal["online", "away", "offline"]
ReceiptStatus = Literal["delivered", "read"]


class _ClientFrame(Struct, tag_field="type", forbid_unknown_fields=True, kw_only=True):
    ref: Ref | None = None


# ---------------------------------------------------------------- visitor → server


class Identity(Struct, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, Meta(max_length=200)] | None = None
    email: Email | None = None
    plan: Annotated[str, Meta(max_length=64)] | None = None
    community: Annotated[str, Meta(max_length=200)] | None = None


class VisitorHello(_ClientFrame, kw_only=True, tag="hello"):
    v: int = PROTOCOL_LEVEL
    site: Annotated[str, Meta(min_length=1, max_length=64)] = "default"
    token: Annotated[str, Meta(max_length=1024)] | None = None
    last_seq: Seq = 0
    identity: Identity | None = None
    identity_sig: Annotated[str, Meta(max_length=128)] | None = None


class VisitorMessage(_ClientFrame, kw_only=True, tag="message"):
    client_id: ClientId
    text: Text


class VisitorTyping(_ClientFrame, kw_only=True, tag="typing"):
    active: bool


class VisitorReceipt(_ClientFrame, kw_only=True, tag="receipt"):
    seq: Seq
    status: ReceiptStatus


class RequestAgent(_ClientFrame, kw_only=True, tag="request_agent"):
    email: Email | None = None


class LeaveEmail(_ClientFrame, kw_only=True, tag="leave_email"):
    email: Email


class Feedback(_ClientFrame, kw_only=True, tag="feedback"):
    """The visitor's answer to "Did this answer your question?" for one suggested article."""

    seq: Seq
    article_id: Annotated[str, Meta(min_length=1, max_length=64)]
    helpful: bool


class Csat(_ClientFrame, kw_only=True, tag="csat"):
    """How did we do? Good, okay or bad, with an optional comment."""

    rating: Literal["good", "okay", "bad"]
    comment: Annotated[str, Meta(max_length=2000)] | None = None


class VisitorEnd(_ClientFrame, kw_only=True, tag="end"):
    pass


class Ping(_ClientFrame, kw_only=True, tag="ping"):
    pass


VisitorFrame = (
    VisitorHello
    | VisitorMessage
    | VisitorTyping
    | VisitorReceipt
    | RequestAgent
    | LeaveEmail
    | Feedback
    | Csat
    | VisitorEnd
    | Ping
)

# ---------------------------------------------------------------- agent → server


class AgentHello(_ClientFrame, kw_only=True, tag="hello"):
    v: int = PROTOCOL_LEVEL
    # None: the console's session cookie, sent with the handshake from a page of this server, identifies the agent.
    token: Annotated[str, Meta(min_length=1, max_length=1024)] | None = None
    cursors: dict[ConvId, Seq] = {}
    presence: PresenceStatus | None = None


class Resume(_ClientFrame, kw_only=True, tag="resume"):
    cursors: dict[ConvId, Seq]


class SetPresence(_ClientFrame, kw_only=True, tag="presence"):
    status: PresenceStatus


class Accept(_ClientFrame, kw_only=True, tag="accept"):
    conversation_id: ConvId


class Decline(_ClientFrame, kw_only=True, tag="decline"):
    conversation_id: ConvId


class TakeOver(_ClientFrame, kw_only=True, tag="take_over"):
    conversation_id: ConvId


class AgentMessage(_ClientFrame, kw_only=True, tag="message"):
    conversation_id: ConvId
    client_id: ClientId
    text: Text


class AgentNote(_ClientFrame, kw_only=True, tag="note"):
    conversation_id: ConvId
    client_id: ClientId
    text: Text


class AgentTyping(_ClientFrame, kw_only=True, tag="typing"):
    conversation_id: ConvId
    active: bool


class AgentReceipt(_ClientFrame, kw_only=True, tag="receipt"):
    conversation_id: ConvId
    seq: Seq
    status: ReceiptStatus


class Transfer(_ClientFrame, kw_only=True, tag="transfer"):
    conversation_id: ConvId
    agent_id: ConvId


class Convert(_ClientFrame, kw_only=True, tag="convert"):
    """Turn the conversation into a ticket now."""

    conversation_id: ConvId


class Suggest(_ClientFrame, kw_only=True, tag="suggest"):
    """Ask for article suggestions for `text`, or for the conversation's latest visitor message."""

    conversation_id: ConvId
    text: Annotated[str, Meta(max_length=4000)] | None = None
    k: Annotated[int, Meta(ge=1, le=10)] = 3


class AgentEnd(_ClientFrame, kw_only=True, tag="end"):
    conversation_id: ConvId
    resolution: Annotated[str, Meta(max_length=64)] | None = None


AgentFrame = (
    AgentHello
    | Resume
    | SetPresence
    | Accept
    | Decline
    | TakeOver
    | AgentMessage
    | AgentNote
    | AgentTyping
    | AgentReceipt
    | Transfer
    | Suggest
    | Convert
    | AgentEnd
    | Ping
)

# ---------------------------------------------------------------- server → client


class _ServerFrame(Struct, tag_field="type", kw_only=True, omit_defaults=False):
    pass


class Author(Struct, kw_only=True):
    id: str | None
    name: str | None


class Event(_ServerFrame, kw_only=True, tag="event"):
    conversation_id: str
    seq: int
    kind: Literal["message", "note", "state", "agent_joined", "agent_left", "transferred", "suggestions", "feedback",
                  "ticket"]
    role: Literal["visitor", "agent", "bot", "system"]
    author: Author | None = None
    text: str | None = None
    client_id: str | None = None
    data: dict[str, Any] | None = None
    at: str


class ConversationInfo(Struct, kw_only=True):
    id: str
    state: str
    last_seq: int
    agent: Author | None = None
    visitor: Identity | None = None
    first_question: str | None = None
    waiting_since: str | None = None
    visitor_read_seq: int = 0
    agent_read_seq: int = 0


class VisitorWelcome(_ServerFrame, kw_only=True, tag="welcome"):
    v: int
    token: str
    visitor_id: str
    conversation: ConversationInfo
    limits: dict[str, int]


class AgentInfo(Struct, kw_only=True):
    id: str
    name: str
    role: str
    presence: str


class OfferInfo(Struct, kw_only=True):
    offer_id: str
    conversation_id: str
    first_question: str | None
    visitor: Identity | None
    waiting_since: str | None
    expires_at: str
    category: str | None = None
    priority: str | None = None


class AgentWelcome(_ServerFrame, kw_only=True, tag="welcome"):
    v: int
    agent: AgentInfo
    conversations: list[ConversationInfo]
    offers: list[OfferInfo]
    limits: dict[str, int]


class Ack(_ServerFrame, kw_only=True, tag="ack"):
    conversation_id: str
    client_id: str
    seq: int
    duplicate: bool = False
    ref: str | None = None


class TypingNotice(_ServerFrame, kw_only=True, tag="typing"):
    conversation_id: str
    role: Literal["visitor", "agent"]
    name: str | None = None
    active: bool


class ReceiptNotice(_ServerFrame, kw_only=True, tag="receipt"):
    conversation_id: str
    role: Literal["visitor", "agent"]
    seq: int
    status: ReceiptStatus


class Offer(_ServerFrame, kw_only=True, tag="offer"):
    offer: OfferInfo


class OfferRevoked(_ServerFrame, kw_only=True, tag="offer_revoked"):
    offer_id: str
    conversation_id: str
    reason: Literal["accepted", "taken", "declined", "expired", "ended", "ticketed"]


class Assigned(_ServerFrame, kw_only=True, tag="assigned"):
    """This agent now owns the conversation; its events follow."""

    conversation: ConversationInfo
    reason: Literal["accept", "take_over", "transfer"]
    ref: str | None = None


class Unassigned(_ServerFrame, kw_only=True, tag="unassigned"):
    """This agent no longer owns the conversation; no more of its events follow."""

    conversation_id: str
    reason: Literal["transferred", "ended", "ticketed", "agent_lost"]


class TicketNotice(_ServerFrame, kw_only=True, tag="ticket_notice"):
    """Something happened to a ticket assigned to this agent (a customer reply re-opened it)."""

    ticket_id: int
    event: Literal["reopened"]
    status: str
    subject: str


class PresenceNotice(_ServerFrame, kw_only=True, tag="presence"):
    status: PresenceStatus
    ref: str | None = None


class Done(_ServerFrame, kw_only=True, tag="done"):
    """The frame with this ref was carried out (for commands whose effect is otherwise an event)."""

    ref: str | None = None
    conversation_id: str | None = None


class Replayed(_ServerFrame, kw_only=True, tag="replayed"):
    """Every missed event of this conversation has been sent; live events follow."""

    conversation_id: str
    last_seq: int


class SuggestedArticle(Struct, kw_only=True):
    id: str
    title: str
    passage: str
    url: str
    score: float


class Suggestions(_ServerFrame, kw_only=True, tag="suggestions"):
    conversation_id: str
    question: str | None
    articles: list[SuggestedArticle]
    no_match: bool
    ref: str | None = None


class Error(_ServerFrame, kw_only=True, tag="error"):
    code: str
    message: str
    ref: str | None = None
    conversation_id: str | None = None
    retryable: bool = False


class Pong(_ServerFrame, kw_only=True, tag="pong"):
    ref: str | None = None


VisitorServerFrame = VisitorWelcome | Event | Ack | TypingNotice | ReceiptNotice | Replayed | Done | Error | Pong
AgentServerFrame = (
    AgentWelcome
    | Event
    | Ack
    | TypingNotice
    | ReceiptNotice
    | Offer
    | OfferRevoked
    | Assigned
    | Unassigned
    | TicketNotice
    | PresenceNotice
    | Suggestions
    | Replayed
    | Done
    | Error
    | Pong
)

# ---------------------------------------------------------------- codes


class ErrorCode:
    BAD_JSON = "bad_json"
    BAD_FRAME = "bad_frame"
    UNKNOWN_TYPE = "unknown_type"
    HELLO_REQUIRED = "hello_required"
    TOO_LONG = "too_long"
    EMPTY = "empty"
    RATE_LIMITED = "rate_limited"
    NOT_FOUND = "not_found"
    ILLEGAL_STATE = "illegal_state"
    ALREADY_TAKEN = "already_taken"
    NOT_OFFERED = "not_offered"
    AT_CAPACITY = "at_capacity"
    IDENTITY_INVALID = "identity_invalid"
    UNAUTHORIZED = "unauthorized"
    RESYNC_REQUIRED = "resync_required"
    UNSUPPORTED_VERSION = "unsupported_version"
    UNAVAILABLE = "unavailable"


class CloseCode:
    NORMAL = 1000
    GOING_AWAY = 1001
    UNSUPPORTED_DATA = 1003
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013
    UNAUTHORIZED = 4001
    HELLO_REQUIRED = 4002
    ORIGIN_FORBIDDEN = 4003
    SLOW_CONSUMER = 4008
    FLOOD = 4029


# ---------------------------------------------------------------- codec

_encoder = msgspec.json.Encoder()
visitor_decoder = msgspec.json.Decoder(VisitorFrame)
agent_decoder = msgspec.json.Decoder(AgentFrame)
_any_decoder = msgspec.json.Decoder()

VISITOR_TYPES = frozenset(t.__struct_config__.tag for t in VisitorFrame.__args__)  # type: ignore[attr-defined]
AGENT_TYPES = frozenset(t.__struct_config__.tag for t in AgentFrame.__args__)  # type: ignore[attr-defined]


class FrameError(Exception):
    def __init__(self, code: str, message: str, ref: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref


def encode(frame: Struct) -> bytes:
    return _encoder.encode(frame)


def decode(data: str | bytes, decoder: msgspec.json.Decoder[Any], known_types: frozenset[str]) -> Any:
    """Decode one client frame or raise FrameError with the documented code."""
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        ref = None
        try:
            raw = _any_decoder.decode(data)
        except msgspec.DecodeError:
            raw = None
        if isinstance(raw, dict):
            ref = raw.get("ref") if isinstance(raw.get("ref"), str) else None
            frame_type = raw.get("type")
            if not isinstance(frame_type, str):
                raise FrameError(ErrorCode.BAD_FRAME, "a frame is a JSON object with a string `type`", ref) from None
            if frame_type not in known_types:
                raise FrameError(
                    ErrorCode.UNKNOWN_TYPE, f"unknown frame type {frame_type[:40]!r}", ref
                ) from None
        raise FrameError(ErrorCode.BAD_FRAME, str(exc), ref) from None
    except msgspec.DecodeError as exc:
        raise FrameError(ErrorCode.BAD_JSON, f"not valid JSON: {exc}") from None


def json_schemas() -> dict[str, Any]:
    """JSON Schemas of the four directions, for tests and docs."""
    out = {}
    for name, union in (
        ("visitor_to_server", VisitorFrame),
        ("agent_to_server", AgentFrame),
        ("server_to_visitor", VisitorServerFrame),
        ("server_to_agent", AgentServerFrame),
    ):
        out[name] = msgspec.json.schema(union)
    return out
