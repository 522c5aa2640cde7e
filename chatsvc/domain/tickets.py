"""The ticket lifecycle, escalation levels and priorities, as pure data and functions.

    new ──assign──▶ open ──start──▶ in_progress ──wait_for_customer──▶ pending_customer
    open ──wait_for_customer──▶ pending_customer ──customer_replied──▶ open
    pending_customer ──start──▶ in_progress
    open, in_progress, pending_customer ──escalate──▶ escalated ──de_escalate──▶ in_progress
    escalated ──escalate──▶ escalated (one level higher: L2, then management)
    open, in_progress, pending_customer, escalated ──resolve──▶ resolved ──close / auto_close──▶ closed
    resolved ──customer_replied / reopen──▶ open           any status but closed ──merge──▶ closed

Assigning again, and a customer message in new, open, in_progress or escalated, keep the status. Closed
is final: a customer writing to a closed ticket starts a new, linked follow-up ticket
(`reply_starts_follow_up`). The store appends every transition to the ticket's history; reopening never
rewrites it. docs/tickets-rules.md has the full table and the reasons.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta


class Status(enum.StrEnum):
    NEW = "new"
    OPEN = "open"
    IN_PROGRESS = "in_progress"
    PENDING_CUSTOMER = "pending_customer"
    RESOLVED = "resolved"
    CLOSED = "closed"
    ESCALATED = "escalated"


class Action(enum.StrEnum):
    ASSIGN = "assign"  # also a reassignment: only a new ticket changes status
    START = "start"
    WAIT_FOR_CUSTOMER = "wait_for_customer"
    CUSTOMER_REPLIED = "customer_replied"
    RESOLVE = "resolve"
    CLOSE = "close"  # the customer confirmed, or an agent closes a resolved ticket
    AUTO_CLOSE = "auto_close"  # resolved for AUTO_CLOSE_AFTER without a customer reply
    REOPEN = "reopen"  # an agent reopens a resolved ticket
    ESCALATE = "escalate"
    DE_ESCALATE = "de_escalate"  # the escalation team hands the ticket back to its agent
    MERGE = "merge"  # a duplicate is closed into another ticket


class IllegalTransition(Exception):
    def __init__(self, status: Status, action: Action) -> None:
        hint = " (a customer reply to a closed ticket starts a follow-up ticket)" if (
            status is Status.CLOSED and action is Action.CUSTOMER_REPLIED) else ""
        super().__init__(f"{action.value!r} is not allowed in status {status.value!r}{hint}")
        self.status = status
        self.action = action


S, A = Status, Action

# Statuses in which somebody on the team owns the ticket and works on it.
WORKING = frozenset({S.OPEN, S.IN_PROGRESS, S.PENDING_CUSTOMER, S.ESCALATED})
# Statuses the team still has to act on (the queue); resolved and closed are done.
UNRESOLVED = frozenset({S.NEW}) | WORKING
FINAL = frozenset({S.CLOSED})

TRANSITIONS: dict[tuple[Status, Action], Status] = {
    (S.NEW, A.ASSIGN): S.OPEN,
    **{(s, A.ASSIGN): s for s in WORKING},
    (S.OPEN, A.START): S.IN_PROGRESS,
    # The customer answered by another channel (a phone call): the agent picks the ticket up again.
    (S.PENDING_CUSTOMER, A.START): S.IN_PROGRESS,
    (S.OPEN, A.WAIT_FOR_CUSTOMER): S.PENDING_CUSTOMER,
    (S.IN_PROGRESS, A.WAIT_FOR_CUSTOMER): S.PENDING_CUSTOMER,
    # A customer may always write, except to a closed ticket (see reply_starts_follow_up). The message
    # goes onto the ticket; only a ticket that was waiting for them, or thought done, changes status.
    **{(s, A.CUSTOMER_REPLIED): s for s in (S.NEW, S.OPEN, S.IN_PROGRESS, S.ESCALATED)},
    (S.PENDING_CUSTOMER, A.CUSTOMER_REPLIED): S.OPEN,
    (S.RESOLVED, A.CUSTOMER_REPLIED): S.OPEN,
    **{(s, A.RESOLVE): S.RESOLVED for s in WORKING},
    (S.RESOLVED, A.CLOSE): S.CLOSED,
    (S.RESOLVED, A.AUTO_CLOSE): S.CLOSED,
    (S.RESOLVED, A.REOPEN): S.OPEN,
    (S.OPEN, A.ESCALATE): S.ESCALATED,
    (S.IN_PROGRESS, A.ESCALATE): S.ESCALATED,
    (S.PENDING_CUSTOMER, A.ESCALATE): S.ESCALATED,
    (S.ESCALATED, A.ESCALATE): S.ESCALATED,  # L2 -> management; `escalate` checks the level goes up
    (S.ESCALATED, A.DE_ESCALATE): S.IN_PROGRESS,
    **{(s, A.MERGE): S.CLOSED for s in Status if s not in FINAL},
}


def transition(status: Status, action: Action) -> Status:
    """The status after `action`, or IllegalTransition naming both."""
    try:
        return TRANSITIONS[(status, action)]
    except KeyError:
        raise IllegalTransition(status, action) from None


def allowed(status: Status, action: Action) -> bool:
    return (status, action) in TRANSITIONS


def allowed_actions(status: Status) -> list[Action]:
    """The actions possible in `status`, in declaration order (for the agent UI's buttons)."""
    return [a for a in Action if (status, a) in TRANSITIONS]


def reply_starts_follow_up(status: Status) -> bool:
    """True when a customer message must open a new follow-up ticket instead of changing this one."""
    return status in FINAL


# --- Timed rules -----------------------------------------------------------------------------------

AUTO_CLOSE_AFTER = timedelta(hours=72)
PENDING_REMINDER_AFTER = timedelta(hours=48)


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got naive {value.isoformat()}")
    return value


def auto_close_at(resolved_at: datetime) -> datetime:
    """When a resolved ticket closes by itself: 72 h of wall-clock time, business hours or not."""
    return _aware(resolved_at, "resolved_at") + AUTO_CLOSE_AFTER


def auto_close_due(status: Status, resolved_at: datetime | None, now: datetime) -> bool:
    if status is not S.RESOLVED or resolved_at is None:
        return False
    return _aware(now, "now") >= auto_close_at(resolved_at)


def reminder_due(status: Status, pending_since: datetime | None, now: datetime,
                 reminded_at: datetime | None = None) -> bool:
    """True once per pending stretch, 48 h after the ticket started waiting for the customer."""
    if status is not S.PENDING_CUSTOMER or pending_since is None:
        return False
    pending_since = _aware(pending_since, "pending_since")
    if reminded_at is not None and _aware(reminded_at, "reminded_at") >= pending_since:
        return False
    return _aware(now, "now") >= pending_since + PENDING_REMINDER_AFTER


# --- Escalation ------------------------------------------------------------------------------------

class EscalationLevel(enum.StrEnum):
    """Who is responsible: L1 support agents, L2 specialist teams, then management (in that order)."""

    L1 = "l1"
    L2 = "l2"
    MANAGEMENT = "management"


class EscalationType(enum.StrEnum):
    TECHNICAL = "technical"
    BILLING = "billing"
    MANAGEMENT = "management"
    SECURITY = "security"


# The team an escalation of each type notifies.
ESCALATION_TEAMS: dict[EscalationType, str] = {
    EscalationType.TECHNICAL: "engineering",
    EscalationType.BILLING: "finance",
    EscalationType.MANAGEMENT: "management",
    EscalationType.SECURITY: "security",
}

_LEVEL_ORDER = (EscalationLevel.L1, EscalationLevel.L2, EscalationLevel.MANAGEMENT)


class EscalationError(ValueError):
    """An escalation that cannot be made; the message says what is missing or wrong."""


def escalation_level(value: EscalationLevel | str) -> EscalationLevel:
    try:
        return EscalationLevel(value.strip().lower() if isinstance(value, str) else value)
    except ValueError:
        known = ", ".join(level.value for level in EscalationLevel)
        raise EscalationError(f"unknown escalation level {value!r}; known levels: {known}") from None


def escalation_type(value: EscalationType | str) -> EscalationType:
    try:
        return EscalationType(value.strip().lower() if isinstance(value, str) else value)
    except ValueError:
        known = ", ".join(t.value for t in EscalationType)
        raise EscalationError(f"unknown escalation type {value!r}; known types: {known}") from None


def escalate(current_level: EscalationLevel | str, reason: str, type: EscalationType | str,
             note: str) -> EscalationLevel:
    """The level a ticket moves to; EscalationError when the escalation is incomplete or not upward.

    A management escalation goes straight to management; any other type goes one level up (L1 -> L2,
    L2 -> management). The note is what the next level reads instead of the whole thread, so it must
    be there: what was tried, the customer's context, and what the next level is asked to do.
    """
    level = escalation_level(current_level)
    kind = escalation_type(type)
    if not (isinstance(reason, str) and reason.strip()):
        raise EscalationError("an escalation needs a reason")
    if not (isinstance(note, str) and note.strip()):
        raise EscalationError("an escalation needs a self-contained note: what was tried, the customer's "
                              "context, and what the next level is asked to do")
    if level is EscalationLevel.MANAGEMENT:
        raise EscalationError("the ticket is already escalated to management, the highest level")
    if kind is EscalationType.MANAGEMENT:
        return EscalationLevel.MANAGEMENT
    return _LEVEL_ORDER[_LEVEL_ORDER.index(level) + 1]


def de_escalate(current_level: EscalationLevel | str) -> EscalationLevel:
    """Back to the ticket's L1 agent (the `de_escalate` action); only an escalated level can go back."""
    if escalation_level(current_level) is EscalationLevel.L1:
        raise EscalationError("the ticket is not escalated")
    return EscalationLevel.L1


# --- Priorities ------------------------------------------------------------------------------------

class Priority(enum.StrEnum):
    """P1 is the most urgent. Members compare by urgency through `urgency` (P1 -> 0)."""

    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"

    @property
    def urgency(self) -> int:
        return _PRIORITY_ORDER.index(self)


_PRIORITY_ORDER = (Priority.P1, Priority.P2, Priority.P3, Priority.P4)

# The same four levels under the names some teams use.
PRIORITY_NAMES: dict[Priority, str] = {
    Priority.P1: "critical", Priority.P2: "high", Priority.P3: "normal", Priority.P4: "low",
}
_ALIASES = {**{name: p for p, name in PRIORITY_NAMES.items()}, "medium": Priority.P3, "urgent": Priority.P1}

# "From Pro or PMC customer -> +1 priority level."
BUMP_PLANS = frozenset({"pro", "pmc"})


def parse_priority(value: Priority | str) -> Priority:
    """P1..P4 in any case, or critical / high / normal (medium) / low."""
    if isinstance(value, Priority):
        return value
    text = value.strip()
    try:
        return Priority(text.upper())
    except ValueError:
        pass
    try:
        return _ALIASES[text.lower()]
    except KeyError:
        raise ValueError(f"unknown priority {value!r}; use P1..P4 or critical, high, normal, low") from None


def raise_priority(priority: Priority | str, levels: int = 1) -> Priority:
    """`levels` steps more urgent (P3 + 1 -> P2); P1 is the ceiling."""
    if levels < 0:
        raise ValueError("levels must not be negative")
    return _PRIORITY_ORDER[max(0, parse_priority(priority).urgency - levels)]


def priority_for_plan(priority: Priority | str, plan: str | None) -> Priority:
    """The priority after the plan bump: one level up for Pro and PMC customers, capped at P1."""
    bumped = plan is not None and plan.strip().lower() in BUMP_PLANS
    return raise_priority(priority, 1 if bumped else 0)
