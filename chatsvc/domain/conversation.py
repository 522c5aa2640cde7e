"""The conversation lifecycle as a pure transition table.

    bot ──request_agent──▶ waiting ──accept──▶ with_agent ──end──▶ ended
     │  └──take_over──────────────────────────▶    │  ▲  └──transfer──┘
     │                     │  ▲                    │  │
     │                     │  └────agent_lost──────┘  │
     │                     ├──no_agent / visitor_left / leave_email──▶ ticket_pending ──convert──▶ ticketed
     └──────────── convert (from bot, waiting, with_agent, ticket_pending) ──────────────────────▶ ticketed

A visitor message reopens an ended conversation (back to `bot`); in every other state it leaves the state
as it is (messages to a ticketed conversation go onto its ticket).
"""

from __future__ import annotations

import enum


class State(enum.StrEnum):
    BOT = "bot"
    WAITING = "waiting"
    WITH_AGENT = "with_agent"
    TICKET_PENDING = "ticket_pending"
    TICKETED = "ticketed"
    ENDED = "ended"


class Trigger(enum.StrEnum):
    VISITOR_MESSAGE = "visitor_message"
    REQUEST_AGENT = "request_agent"
    TAKE_OVER = "take_over"
    ACCEPT = "accept"
    TRANSFER = "transfer"
    AGENT_LOST = "agent_lost"
    NO_AGENT = "no_agent"
    VISITOR_LEFT = "visitor_left"
    LEAVE_EMAIL = "leave_email"
    CONVERT = "convert"
    END = "end"


class IllegalTransition(Exception):
    def __init__(self, state: State, trigger: Trigger) -> None:
        super().__init__(f"{trigger.value!r} is not allowed in state {state.value!r}")
        self.state = state
        self.trigger = trigger


S, T = State, Trigger

TRANSITIONS: dict[tuple[State, Trigger], State] = {
    # A visitor may always write; it changes nothing except reopening an ended chat.
    **{(s, T.VISITOR_MESSAGE): s for s in State if s is not S.ENDED},
    (S.ENDED, T.VISITOR_MESSAGE): S.BOT,
    (S.BOT, T.REQUEST_AGENT): S.WAITING,
    (S.ENDED, T.REQUEST_AGENT): S.WAITING,
    (S.BOT, T.TAKE_OVER): S.WITH_AGENT,
    (S.WAITING, T.ACCEPT): S.WITH_AGENT,
    (S.WAITING, T.TAKE_OVER): S.WITH_AGENT,
    (S.WITH_AGENT, T.TRANSFER): S.WITH_AGENT,
    (S.WITH_AGENT, T.AGENT_LOST): S.WAITING,
    (S.WAITING, T.NO_AGENT): S.TICKET_PENDING,
    (S.WAITING, T.VISITOR_LEFT): S.TICKET_PENDING,
    (S.BOT, T.LEAVE_EMAIL): S.TICKET_PENDING,
    (S.WAITING, T.LEAVE_EMAIL): S.TICKET_PENDING,
    (S.BOT, T.CONVERT): S.TICKETED,
    (S.WAITING, T.CONVERT): S.TICKETED,
    (S.WITH_AGENT, T.CONVERT): S.TICKETED,
    (S.TICKET_PENDING, T.CONVERT): S.TICKETED,
    (S.BOT, T.END): S.ENDED,
    (S.WAITING, T.END): S.ENDED,
    (S.WITH_AGENT, T.END): S.ENDED,
}

# States in which an agent owns the conversation.
AGENT_STATES = frozenset({S.WITH_AGENT})
# States from which an agent may still send a customer-facing chat message.
AGENT_MAY_WRITE = frozenset({S.WITH_AGENT})


def transition(state: State, trigger: Trigger) -> State:
    """The state after `trigger`, or IllegalTransition naming both."""
    try:
        return TRANSITIONS[(state, trigger)]
    except KeyError:
        raise IllegalTransition(state, trigger) from None


def allowed(state: State, trigger: Trigger) -> bool:
    return (state, trigger) in TRANSITIONS
