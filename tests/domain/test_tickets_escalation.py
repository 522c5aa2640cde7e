"""Escalation goes up only, with a reason and a self-contained note. Priorities and the plan bump."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatsvc.domain.tickets import (
    ESCALATION_TEAMS,
    EscalationError,
    EscalationLevel,
    EscalationType,
    Priority,
    de_escalate,
    escalate,
    parse_priority,
    priority_for_plan,
    raise_priority,
)

L, K = EscalationLevel, EscalationType
NOTE = ("Customer cannot export residents since Monday; tried another browser and a fresh CSV. "
        "Export job 77 fails with a 500. Please find the cause and tell me what to say to the customer.")


@pytest.mark.parametrize(("current", "kind", "expected"), [
    (L.L1, K.TECHNICAL, L.L2),
    (L.L1, K.BILLING, L.L2),
    (L.L1, K.SECURITY, L.L2),
    (L.L1, K.MANAGEMENT, L.MANAGEMENT),
    (L.L2, K.TECHNICAL, L.MANAGEMENT),
    (L.L2, K.BILLING, L.MANAGEMENT),
    (L.L2, K.SECURITY, L.MANAGEMENT),
    (L.L2, K.MANAGEMENT, L.MANAGEMENT),
])
def test_escalation_goes_one_level_up_or_straight_to_management(
        current: EscalationLevel, kind: EscalationType, expected: EscalationLevel) -> None:
    assert escalate(current, "export broken", kind, NOTE) is expected


@pytest.mark.parametrize("kind", list(EscalationType))
def test_nothing_is_above_management(kind: EscalationType) -> None:
    with pytest.raises(EscalationError, match="already escalated to management"):
        escalate(L.MANAGEMENT, "still broken", kind, NOTE)


@pytest.mark.parametrize("reason", ["", "   ", "\n\t"])
def test_a_reason_is_required(reason: str) -> None:
    with pytest.raises(EscalationError, match="reason"):
        escalate(L.L1, reason, K.TECHNICAL, NOTE)


@pytest.mark.parametrize("note", ["", "  \n "])
def test_a_self_contained_note_is_required(note: str) -> None:
    with pytest.raises(EscalationError, match="self-contained note"):
        escalate(L.L1, "export broken", K.TECHNICAL, note)


def test_strings_from_the_api_are_accepted_and_unknown_ones_named() -> None:
    assert escalate("l1", "export broken", "Technical", NOTE) is L.L2
    with pytest.raises(EscalationError, match=r"unknown escalation type 'legal'.*technical, billing"):
        escalate("l1", "lawyer", "legal", NOTE)
    with pytest.raises(EscalationError, match="unknown escalation level 'l3'"):
        escalate("l3", "x", "technical", NOTE)


def test_every_type_notifies_a_team() -> None:
    assert ESCALATION_TEAMS == {K.TECHNICAL: "engineering", K.BILLING: "finance", K.MANAGEMENT: "management",
                                K.SECURITY: "security"}


def test_de_escalation_returns_to_l1() -> None:
    assert de_escalate(L.L2) is L.L1
    assert de_escalate("management") is L.L1
    with pytest.raises(EscalationError, match="not escalated"):
        de_escalate(L.L1)


ORDER = [L.L1, L.L2, L.MANAGEMENT]


@settings(max_examples=100)
@given(st.lists(st.sampled_from(list(EscalationType)), max_size=6))
def test_levels_only_ever_go_up(kinds: list[EscalationType]) -> None:
    level = L.L1
    for kind in kinds:
        try:
            new = escalate(level, "reason", kind, NOTE)
        except EscalationError:
            assert level is L.MANAGEMENT
            continue
        assert ORDER.index(new) > ORDER.index(level)
        level = new


def test_priorities_parse_from_codes_and_names() -> None:
    assert [parse_priority(x) for x in ("p1", " P2 ", "Normal", "medium", "LOW", "critical")] == [
        Priority.P1, Priority.P2, Priority.P3, Priority.P3, Priority.P4, Priority.P1]
    with pytest.raises(ValueError, match="unknown priority 'P5'"):
        parse_priority("P5")
    assert Priority.P1.urgency == 0 and Priority.P4.urgency == 3


def test_priority_bump_for_pro_and_pmc_is_capped_at_p1() -> None:
    assert raise_priority(Priority.P3) is Priority.P2
    assert raise_priority(Priority.P4, 2) is Priority.P2
    assert raise_priority(Priority.P1) is Priority.P1
    assert priority_for_plan("P3", "Pro") is Priority.P2
    assert priority_for_plan(Priority.P2, "pmc") is Priority.P1
    assert priority_for_plan(Priority.P1, "pro") is Priority.P1
    assert priority_for_plan(Priority.P3, "growth") is Priority.P3
    assert priority_for_plan(Priority.P3, None) is Priority.P3
    with pytest.raises(ValueError):
        raise_priority(Priority.P3, -1)
