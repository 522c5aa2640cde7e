"""Every (status, action) pair of the ticket lifecycle, against an independent statement of the rules."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatsvc.domain.tickets import (
    AUTO_CLOSE_AFTER,
    FINAL,
    TRANSITIONS,
    Action,
    IllegalTransition,
    Status,
    allowed,
    allowed_actions,
    auto_close_at,
    auto_close_due,
    reminder_due,
    reply_starts_follow_up,
    transition,
)

S, A = Status, Action

# The rules as docs/tickets-rules.md states them, written out pair by pair (77 pairs, 33 allowed).
EXPECTED: dict[tuple[Status, Action], Status] = {
    (S.NEW, A.ASSIGN): S.OPEN,
    (S.OPEN, A.ASSIGN): S.OPEN,
    (S.IN_PROGRESS, A.ASSIGN): S.IN_PROGRESS,
    (S.PENDING_CUSTOMER, A.ASSIGN): S.PENDING_CUSTOMER,
    (S.ESCALATED, A.ASSIGN): S.ESCALATED,
    (S.OPEN, A.START): S.IN_PROGRESS,
    (S.PENDING_CUSTOMER, A.START): S.IN_PROGRESS,
    (S.OPEN, A.WAIT_FOR_CUSTOMER): S.PENDING_CUSTOMER,
    (S.IN_PROGRESS, A.WAIT_FOR_CUSTOMER): S.PENDING_CUSTOMER,
    (S.NEW, A.CUSTOMER_REPLIED): S.NEW,
    (S.OPEN, A.CUSTOMER_REPLIED): S.OPEN,
    (S.IN_PROGRESS, A.CUSTOMER_REPLIED): S.IN_PROGRESS,
    (S.ESCALATED, A.CUSTOMER_REPLIED): S.ESCALATED,
    (S.PENDING_CUSTOMER, A.CUSTOMER_REPLIED): S.OPEN,
    (S.RESOLVED, A.CUSTOMER_REPLIED): S.OPEN,
    (S.OPEN, A.RESOLVE): S.RESOLVED,
    (S.IN_PROGRESS, A.RESOLVE): S.RESOLVED,
    (S.PENDING_CUSTOMER, A.RESOLVE): S.RESOLVED,
    (S.ESCALATED, A.RESOLVE): S.RESOLVED,
    (S.RESOLVED, A.CLOSE): S.CLOSED,
    (S.RESOLVED, A.AUTO_CLOSE): S.CLOSED,
    (S.RESOLVED, A.REOPEN): S.OPEN,
    (S.OPEN, A.ESCALATE): S.ESCALATED,
    (S.IN_PROGRESS, A.ESCALATE): S.ESCALATED,
    (S.PENDING_CUSTOMER, A.ESCALATE): S.ESCALATED,
    (S.ESCALATED, A.ESCALATE): S.ESCALATED,
    (S.ESCALATED, A.DE_ESCALATE): S.IN_PROGRESS,
    (S.NEW, A.MERGE): S.CLOSED,
    (S.OPEN, A.MERGE): S.CLOSED,
    (S.IN_PROGRESS, A.MERGE): S.CLOSED,
    (S.PENDING_CUSTOMER, A.MERGE): S.CLOSED,
    (S.RESOLVED, A.MERGE): S.CLOSED,
    (S.ESCALATED, A.MERGE): S.CLOSED,
}


@pytest.mark.parametrize(("status", "action"), list(itertools.product(Status, Action)))
def test_every_pair(status: Status, action: Action) -> None:
    if (status, action) in EXPECTED:
        assert allowed(status, action)
        assert transition(status, action) is EXPECTED[(status, action)]
    else:
        assert not allowed(status, action)
        with pytest.raises(IllegalTransition) as info:
            transition(status, action)
        assert status.value in str(info.value) and action.value in str(info.value)
        assert (info.value.status, info.value.action) == (status, action)


def test_the_table_has_nothing_else() -> None:
    assert TRANSITIONS == EXPECTED
    assert len(list(itertools.product(Status, Action))) == 77


def test_the_main_path_of_the_manual() -> None:
    status = S.NEW
    path = [(A.ASSIGN, S.OPEN), (A.START, S.IN_PROGRESS), (A.WAIT_FOR_CUSTOMER, S.PENDING_CUSTOMER),
            (A.RESOLVE, S.RESOLVED), (A.CLOSE, S.CLOSED)]
    for action, expected in path:
        status = transition(status, action)
        assert status is expected


def test_a_customer_reply_to_a_closed_ticket_starts_a_follow_up() -> None:
    assert reply_starts_follow_up(S.CLOSED)
    assert not any(reply_starts_follow_up(s) for s in Status if s is not S.CLOSED)
    with pytest.raises(IllegalTransition, match="follow-up"):
        transition(S.CLOSED, A.CUSTOMER_REPLIED)


def test_closed_is_final() -> None:
    assert {S.CLOSED} == FINAL
    assert allowed_actions(S.CLOSED) == []


def test_allowed_actions_lists_buttons_in_order() -> None:
    assert allowed_actions(S.NEW) == [A.ASSIGN, A.CUSTOMER_REPLIED, A.MERGE]
    assert allowed_actions(S.RESOLVED) == [A.CUSTOMER_REPLIED, A.CLOSE, A.AUTO_CLOSE, A.REOPEN, A.MERGE]


T0 = datetime(2026, 3, 6, 15, 0, tzinfo=UTC)


def test_auto_close_after_72_hours_of_wall_clock() -> None:
    assert timedelta(hours=72) == AUTO_CLOSE_AFTER
    assert auto_close_at(T0) == T0 + timedelta(hours=72)
    assert not auto_close_due(S.RESOLVED, T0, T0 + timedelta(hours=71, minutes=59))
    assert auto_close_due(S.RESOLVED, T0, T0 + timedelta(hours=72))
    assert not auto_close_due(S.OPEN, T0, T0 + timedelta(days=30))
    assert not auto_close_due(S.RESOLVED, None, T0)
    with pytest.raises(ValueError, match="aware"):
        auto_close_at(datetime(2026, 1, 1))


def test_pending_reminder_once_per_stretch() -> None:
    later = T0 + timedelta(hours=48)
    assert not reminder_due(S.PENDING_CUSTOMER, T0, later - timedelta(seconds=1))
    assert reminder_due(S.PENDING_CUSTOMER, T0, later)
    assert not reminder_due(S.PENDING_CUSTOMER, T0, later, reminded_at=later)
    # A reminder sent during an earlier stretch does not count for this one.
    assert reminder_due(S.PENDING_CUSTOMER, T0, later, reminded_at=T0 - timedelta(days=3))
    assert not reminder_due(S.OPEN, T0, later)


@settings(max_examples=100)
@given(st.lists(st.sampled_from(list(Action)), max_size=40))
def test_random_action_sequences(actions: list[Action]) -> None:
    """Illegal actions change nothing; legal ones follow the table; closed is never left; the only ways
    into closed are closing a resolved ticket or merging; once a ticket leaves new it never comes back."""
    status = S.NEW
    history = [status]
    for action in actions:
        before = status
        if allowed(status, action):
            status = transition(status, action)
            assert status is EXPECTED[(before, action)]
            history.append(status)
            if status is S.CLOSED:
                assert before is S.RESOLVED or action is A.MERGE
        else:
            with pytest.raises(IllegalTransition):
                transition(status, action)
            assert status is before
        if before is S.CLOSED:
            assert status is S.CLOSED
    left_new = list(itertools.dropwhile(lambda s: s is S.NEW, history))
    assert S.NEW not in left_new


@settings(max_examples=100)
@given(st.lists(st.sampled_from(list(Action)), max_size=30))
def test_every_unfinished_ticket_can_still_be_closed(actions: list[Action]) -> None:
    status = S.NEW
    for action in actions:
        if allowed(status, action):
            status = transition(status, action)
    # Without merging: assign if new, resolve, close.
    for action in (A.ASSIGN, A.RESOLVE, A.CLOSE):
        if allowed(status, action):
            status = transition(status, action)
    assert status is S.CLOSED
