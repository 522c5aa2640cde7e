"""What travels over the broker: a one-line header and the exact frame bytes the sockets send.

Processes that receive a payload never re-encode it: the header says whether it is a durable event
(with its sequence number and whether it is internal), an ephemeral notice, or a control message for an
agent's sessions.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from chatsvc.ws import protocol

EVENT, NOTICE, CONTROL, SESSION_END = b"e", b"x", b"c", b"s"


def conv_channel(conversation_id: str) -> str:
    return f"conv:{conversation_id}"


def agent_channel(agent_id: str) -> str:
    return f"agent:{agent_id}"


def event_payload(frame: protocol.Event, internal: bool) -> bytes:
    return b"e %d %d\n" % (frame.seq, 1 if internal else 0) + protocol.encode(frame)


def notice_payload(frame: msgspec.Struct, role: str) -> bytes:
    return b"x " + role.encode() + b"\n" + protocol.encode(frame)


def control_payload(frame: msgspec.Struct) -> bytes:
    return b"c\n" + protocol.encode(frame)


def session_end_payload(console_session_id: str) -> bytes:
    """A console session ended (log-out, password change): its live sockets close, in every process."""
    return b"s " + console_session_id.encode() + b"\n"


@dataclass(frozen=True, slots=True)
class Payload:
    kind: bytes
    seq: int
    internal: bool
    role: str
    frame: bytes


def parse(payload: bytes) -> Payload:
    header, _, frame = payload.partition(b"\n")
    parts = header.split(b" ")
    kind = parts[0]
    if kind == EVENT:
        return Payload(EVENT, int(parts[1]), parts[2] == b"1", "", frame)
    if kind == NOTICE:
        return Payload(NOTICE, 0, False, parts[1].decode(), frame)
    if kind == SESSION_END:
        return Payload(SESSION_END, 0, False, parts[1].decode(), b"")
    return Payload(CONTROL, 0, False, "", frame)
