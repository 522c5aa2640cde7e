"""docs/tickets-rules.md states the same rules as the code: its tables are read and compared."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from chatsvc.domain.sla import KAMFLO, LOTWIZE
from chatsvc.domain.tickets import ESCALATION_TEAMS, TRANSITIONS, Action, EscalationType, Priority, Status
from chatsvc.tickets.macros import FILTERS, VARIABLES, MacroError, validate_macro

DOC = Path(__file__).resolve().parents[2] / "docs" / "tickets-rules.md"


def tables(header: str) -> list[list[list[str]]]:
    """Every table whose header row starts with `header`, as rows of cells (header and rule excluded)."""
    found: list[list[list[str]]] = []
    lines = DOC.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith(header):
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                cells = re.split(r"(?<!\\)\|", row.strip()[1:-1])
                rows.append([cell.strip().replace("\\|", "|") for cell in cells])
            found.append(rows)
    return found


def code(cell: str) -> str:
    return cell.strip("`")


def duration(cell: str) -> timedelta:
    number, unit = cell.split()
    units = {"min": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}
    return units[unit] * float(number)


def test_transition_table() -> None:
    (rows,) = tables("| action | `new` |")
    header = DOC.read_text().split("| action | ", 1)[1].splitlines()[0]
    statuses = [Status(code(c.strip())) for c in header.strip().strip("|").split("|")]
    documented = {}
    for action, *cells in rows:
        for status, cell in zip(statuses, cells, strict=True):
            if not cell.startswith("—"):
                documented[(status, Action(code(action)))] = Status(cell)
    assert documented == TRANSITIONS
    assert {Action(code(r[0])) for r in rows} == set(Action)


def test_escalation_teams() -> None:
    (rows,) = tables("| Type | Team notified |")
    assert {EscalationType(code(t)): team for t, team in rows} == ESCALATION_TEAMS


def test_sla_tables() -> None:
    lotwize, kamflo = tables("| Priority | First response | Resolution |")
    for policy, rows in ((LOTWIZE, lotwize), (KAMFLO, kamflo)):
        assert {Priority(p): (duration(f), duration(r)) for p, f, r in rows} == {
            p: (t.first_response, t.resolution) for p, t in policy.by_priority.items()}
    (plans,) = tables("| Plan | First response | Resolution |")
    assert {p.lower(): (duration(f), duration(r)) for p, f, r in plans} == {
        p: (t.first_response, t.resolution) for p, t in LOTWIZE.by_plan.items()}
    assert KAMFLO.by_plan == {}


def test_macro_variables_and_filters() -> None:
    (rows,) = tables("| Variable | Value |")
    names = [re.fullmatch(r"`\{\{ (\w+) \}\}`", v) for v, _ in rows]
    assert all(names)
    assert {m.group(1): text for m, (_, text) in zip(names, rows, strict=True) if m} == dict(VARIABLES)
    text = DOC.read_text()
    assert "the filters " + ", ".join(f"`{f}`" for f in FILTERS[:-1]) + f" and `{FILTERS[-1]}`" in text


def test_macro_errors_are_the_documented_ones() -> None:
    (rows,) = tables("| Body | Error |")
    assert len(rows) >= 6
    for body, error in rows:
        with pytest.raises(MacroError) as info:
            validate_macro(code(body))
        assert error.split("…")[0].strip() in str(info.value)
