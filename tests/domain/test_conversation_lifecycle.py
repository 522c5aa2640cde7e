"""Every (state, trigger) pair of the conversation lifecycle, against an independent statement of the rules."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatsvc.domain.conversation import IllegalTransition, State, Trigger, allowed, transition

S, T = State, Trigger

# The rules as the product describes them, written out pair by pair.
EXPECTED: dict[tuple[State, Trigger], State] = {
    (S.BOT, T.VISITOR_MESSAGE): S.BOT,
    (S.WAITING, T.VISITOR_MESSAGE): S.WAITING,
    (S.WITH_AGENT, T.VISITOR_MESSAGE): S.WITH_AGENT,
    (S.TICKET_PENDING, T.VISITOR_MESSAGE): S.TICKET_PENDING,
    (S.TICKETED, T.VISITOR_MESSAGE): S.TICKETED,
    (S.ENDED, T.VISITOR_MESSAGE): S.BOT,
    (S.BOT, T.REQUEST_AGENT): S.WAITING,
    (S.ENDED, T.REQUEST_AGENT): S.WAITING,
    (S.BOT, T.TAKE_OVER): S.WITH_AGENT,
    (S.WAITING, T.TAKE_OVER): S.WITH_AGENT,
    (S.WAITING, T.ACCEPT): S.WITH_AGENT,
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


@pytest.mark.parametrize(("state", "trigger"), list(itertools.product(State, Trigger)))
def test_every_pair(state: State, trigger: Trigger) -> None:
    if (state, trigger) in EXPECTED:
        assert allowed(state, trigger)
        assert transition(state, trigger) is EXPECTED[(state, trigger)]
    else:
        assert not allowed(state, trigger)
        with pytest.raises(IllegalTransition) as info:
            transition(state, trigger)
        assert state.value in str(info.value) and trigger.value in str(info.value)


def test_a_ticketed_conversation_never_converts_twice() -> None:
    with pytest.raises(IllegalTransition):
        transition(S.TICKETED, T.CONVERT)


def test_only_an_accept_or_take_over_gives_a_conversation_to_an_agent() -> None:
    into_agent = {trigger for (state, trigger), new in EXPECTED.items()
                  if new is S.WITH_AGENT and state is not S.WITH_AGENT}
    assert into_agent == {T.ACCEPT, T.TAKE_OVER}


@given(st.lists(st.sampled_from(list(Trigger)), max_size=40))
def test_any_sequence_stays_within_the_table(triggers: list[Trigger]) -> None:
    state = S.BOT
    for trigger in triggers:
        if allowed(state, trigger):
            new = transition(state, trigger)
            assert EXPECTED[(state, trigger)] is new
            state = new
        else:
            with pytest.raises(IllegalTransition):
                transition(state, trigger)
    assert state in State
