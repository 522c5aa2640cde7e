"""What the ticket pages show, as pure functions: SLA timers with their colour, the dashboard's counts,
the dashboard's filters, durations in words. No I/O here; `chatsvc.console.tickets` loads and renders.

The SLA colours follow the LotWize manual ("ticket turns yellow (approaching), turns red (breached)") and
the SLA rules in `chatsvc.domain.sla`: a timer is `ok` until it has used 75 % of its target (the
policy's `approaching_share`), `approaching` (yellow) until its due instant, and `breached` (red) after
it. Each running timer also carries the instants at which it turns yellow and red, so the page's script
can move the colour on while the page stays open, without asking the server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from typing import Any, Final
from zoneinfo import ZoneInfo

from chatsvc.domain import sla
from chatsvc.domain import tickets as domain

STATUS_LABELS: Final = {
    "new": "New", "open": "Open", "in_progress": "In progress", "pending_customer": "Pending customer",
    "resolved": "Resolved", "closed": "Closed", "escalated": "Escalated",
}
ACTION_LABELS: Final = {
    "start": "Start work", "wait_for_customer": "Wait for customer", "resolve": "Resolve", "close": "Close",
    "reopen": "Reopen", "de_escalate": "Hand back to agent",
}
# The status actions an agent takes with a button, in the order the buttons appear.
BUTTON_ACTIONS: Final = ("start", "wait_for_customer", "resolve", "close", "reopen", "de_escalate")
LEVEL_LABELS: Final = {"l1": "Level 1 (support)", "l2": "Level 2 (specialist team)", "management": "Management"}
ESCALATION_TYPES: Final = (
    ("technical", "Technical", "engineering team"), ("billing", "Billing", "finance team"),
    ("management", "Management", "manager review"), ("security", "Security", "security team"),
)
# The Kamflo manual's "Escalation checklist — before you escalate": each box must be ticked.
ESCALATION_CHECKLIST: Final = (
    ("documented", "I have documented everything tried so far in the ticket notes."),
    ("priority", "I have set the correct priority level for the severity."),
    ("customer_updated", "I have sent the customer an update telling them the issue is being escalated."),
    ("asked", "I have specified what I need from the next level (investigate, fix, approve, call)."),
    ("category", "I have tagged the ticket with the correct category so it routes to the right person."),
)
PRIORITY_LABELS: Final = {"P1": "P1 critical", "P2": "P2 high", "P3": "P3 normal", "P4": "P4 low"}
UNRESOLVED: Final = tuple(s.value for s in domain.Status if s in domain.UNRESOLVED)
# The dashboard's "Open" count: assigned and being worked, short of escalated (which has its own count).
OPEN_STATUSES: Final = ("open", "in_progress", "pending_customer")
STATUS_FILTERS: Final = {
    "unresolved": UNRESOLVED, "all": None, "new": ("new",), "open": OPEN_STATUSES,
    "in_progress": ("in_progress",), "pending_customer": ("pending_customer",), "escalated": ("escalated",),
    "resolved": ("resolved",), "closed": ("closed",),
}
SLA_FILTERS: Final = ("", "overdue", "approaching", "at_risk")
SORTS: Final = {"priority": "Priority (P1 first)", "age": "Age (oldest first)", "sla": "SLA (overdue first)",
                "updated": "Last update"}
PAGE_SIZE: Final = 50


# ------------------------------------------------------------------ durations


def duration_words(delta: timedelta) -> str:
    """A short human duration: 45 s, 12 min, 3 h 5 min, 2 d 4 h (never negative; callers say "ago")."""
    seconds = int(abs(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def minutes_words(minutes: float | None) -> str:
    """Average or median durations of the metrics: 42 min, 3.5 h, 2.1 d; an em dash for none."""
    if minutes is None:
        return "—"
    if minutes < 60:
        return f"{minutes:.0f} min"
    if minutes < 48 * 60:
        return f"{minutes / 60:.1f} h"
    return f"{minutes / 1440:.1f} d"


# ------------------------------------------------------------------ SLA timers


@dataclass(frozen=True)
class TimerView:
    """One SLA timer as a page shows it."""

    clock: str  # first_response | resolution
    name: str  # "First response" | "Resolution"
    state: str  # ok | approaching | breached (the SLA rules' state)
    colour: str  # normal | yellow | red | done | paused: what the CSS class says
    label: str  # "due in 12 min", "overdue by 3 min", "met", "missed", "paused (waiting for the customer)"
    due: datetime | None
    approaching_at: datetime | None  # set while the timer runs: when it turns yellow
    running: bool

    @property
    def css(self) -> str:
        return f"sla sla-{self.colour}"


TIMER_NAMES: Final = {sla.Clock.FIRST_RESPONSE: "First response", sla.Clock.RESOLUTION: "Resolution"}


def _approaching_at(facts: sla.TicketFacts, policy: sla.SlaPolicy, clock: sla.Clock) -> datetime:
    # The same inputs the SLA rules use for the due instant, with the approaching share of the target.
    start, target, calendar, pauses, _, _ = sla._timer_inputs(facts, policy, clock)
    return sla.add_business_time(start, target * policy.approaching_share, calendar, pauses)


def timer_view(now: datetime, report: sla.TimerReport, facts: sla.TicketFacts, policy: sla.SlaPolicy) -> TimerView:
    name = TIMER_NAMES[report.clock]
    breached = report.state is sla.SlaState.BREACHED
    if report.stopped:
        return TimerView(report.clock.value, name, report.state.value, "done", "missed" if breached else "met",
                         report.due, None, False)
    if report.paused:
        return TimerView(report.clock.value, name, report.state.value, "red" if breached else "paused",
                         "paused (waiting for the customer)", report.due, None, False)
    assert report.due is not None  # a running timer that is not paused has a due instant
    if breached:
        colour, label = "red", f"overdue by {duration_words(now - report.due)}"
    else:
        colour = "yellow" if report.state is sla.SlaState.APPROACHING else "normal"
        label = f"due in {duration_words(report.due - now)}"
    return TimerView(report.clock.value, name, report.state.value, colour, label, report.due,
                     _approaching_at(facts, policy, report.clock), True)


@dataclass(frozen=True)
class TicketTimers:
    first_response: TimerView
    resolution: TimerView
    worst: str  # ok | approaching | breached, over both timers (the API's `sla.worst`)

    @property
    def shown(self) -> TimerView:
        """The timer the queue's SLA column shows: the running one due first, else the resolution."""
        running = [t for t in (self.first_response, self.resolution) if t.running and t.due is not None]
        return min(running, key=lambda t: t.due) if running else self.resolution  # type: ignore[arg-type,return-value]

    @property
    def colour(self) -> str:
        """The colour of the ticket's row: red once any timer is breached, yellow when one approaches."""
        if self.worst == "breached":
            return "red"
        if self.worst == "approaching":
            return "yellow"
        return self.shown.colour if self.shown.colour in ("done", "paused") else "normal"


def ticket_timers(now: datetime, facts: sla.TicketFacts, policy: sla.SlaPolicy) -> TicketTimers:
    """Both timers of a ticket at `now`, as the SLA rules' `sla_report` states them.

    A queue reloads all day, and the business-hours arithmetic costs about half a millisecond a ticket.
    Outside a wait for the customer, a timer's due instant and the instant it turns yellow do not depend
    on `now`, so they are computed once per ticket state (`_instants`, cached) and each page only compares
    them with `now`. A resolution timer paused while waiting for the customer moves with `now`: the rules
    compute it each time."""
    if facts.pending_since is not None and policy.pending_pauses:
        return timers_from_report(now, facts, policy)
    first = _fast_view(now, facts, policy, sla.Clock.FIRST_RESPONSE)
    resolution = _fast_view(now, facts, policy, sla.Clock.RESOLUTION)
    order = list(sla.SlaState)
    worst = max(sla.SlaState(first.state), sla.SlaState(resolution.state), key=order.index)
    return TicketTimers(first, resolution, worst.value)


def timers_from_report(now: datetime, facts: sla.TicketFacts, policy: sla.SlaPolicy) -> TicketTimers:
    report = sla.sla_report(now, facts, policy)
    return TicketTimers(timer_view(now, report.first_response, facts, policy),
                        timer_view(now, report.resolution, facts, policy), report.worst.value)


@lru_cache(maxsize=50_000)
def _instants(facts: sla.TicketFacts, policy: sla.SlaPolicy,
              clock: sla.Clock) -> tuple[datetime, datetime, datetime | None]:
    """(turns yellow, due, stopped at) of a timer that is not paused, exactly as the rules count them."""
    start, target, calendar, pauses, _, stop = sla._timer_inputs(facts, policy, clock)
    if stop is not None:  # pauses after the stop have not happened as far as this timer knows
        pauses = [(a, min(b, stop)) for a, b in pauses if a < stop]
    due = sla.add_business_time(start, target, calendar, pauses)
    approaching = sla.add_business_time(start, target * policy.approaching_share, calendar, pauses)
    return approaching, due, stop


def _fast_view(now: datetime, facts: sla.TicketFacts, policy: sla.SlaPolicy, clock: sla.Clock) -> TimerView:
    approaching, due, stop = _instants(facts, policy, clock)
    name = TIMER_NAMES[clock]
    if stop is not None and stop <= now:
        breached = stop > due
        return TimerView(clock.value, name, "breached" if breached else "ok", "done", "missed" if breached else "met",
                         due, None, False)
    if now > due:
        return TimerView(clock.value, name, "breached", "red", f"overdue by {duration_words(now - due)}", due,
                         approaching, True)
    state, colour = ("approaching", "yellow") if now >= approaching else ("ok", "normal")
    return TimerView(clock.value, name, state, colour, f"due in {duration_words(due - now)}", due, approaching, True)


# ------------------------------------------------------------------ the dashboard


@dataclass(frozen=True)
class QueueCounts:
    new: int
    open: int
    overdue: int
    escalated: int
    resolved_today: int


def start_of_day(now: datetime, zone: ZoneInfo) -> datetime:
    """Midnight of `now`'s day in `zone`, in UTC (the store compares instants in UTC)."""
    local = now.astimezone(zone)
    return datetime.combine(local.date(), time(0), tzinfo=zone).astimezone(UTC)


def queue_counts(rows: Iterable[tuple[str, str, datetime | None]], today_starts: datetime) -> QueueCounts:
    """The manual's queue overview from (status, worst SLA state, resolved_at) of every ticket not merged:
    new (unassigned), open (assigned and being worked), overdue (unresolved and past an SLA target),
    escalated, and resolved today (resolved since midnight and still resolved or closed)."""
    new = open_ = overdue = escalated = resolved = 0
    for status, worst, resolved_at in rows:
        if status == "new":
            new += 1
        elif status in OPEN_STATUSES:
            open_ += 1
        elif status == "escalated":
            escalated += 1
        if status in UNRESOLVED and worst == "breached":
            overdue += 1
        if status in ("resolved", "closed") and resolved_at is not None and resolved_at >= today_starts:
            resolved += 1
    return QueueCounts(new, open_, overdue, escalated, resolved)


@dataclass(frozen=True)
class QueueFilters:
    status: str = "unresolved"
    priority: str = ""
    assignee: str = ""  # "" anyone, "me", "none", or an agent id
    sla: str = ""  # "" any, overdue, approaching, at_risk (either)
    q: str = ""
    sort: str = "priority"
    page: int = 1

    def query(self, **changes: Any) -> dict[str, str]:
        """The query string of these filters with `changes`, defaults left out (for links and paging)."""
        values = {**self.__dict__, **changes}
        defaults = QueueFilters().__dict__
        return {k: str(v) for k, v in values.items() if v != defaults[k]}


def parse_filters(params: Mapping[str, str]) -> QueueFilters:
    """The filters a dashboard URL asks for; anything unknown falls back to the default, never an error
    (a bookmarked link from an older version still opens)."""
    status = params.get("status", "unresolved")
    priority = params.get("priority", "")
    sla_filter = params.get("sla", "")
    sort = params.get("sort", "priority")
    try:
        page = max(1, int(params.get("page", "1")))
    except ValueError:
        page = 1
    return QueueFilters(
        status=status if status in STATUS_FILTERS else "unresolved",
        priority=priority if priority in PRIORITY_LABELS else "",
        assignee=params.get("assignee", "")[:64],
        sla=sla_filter if sla_filter in SLA_FILTERS else "",
        q=params.get("q", "").strip()[:200],
        sort=sort if sort in SORTS else "priority",
        page=page,
    )


def sla_matches(wanted: str, worst: str, status: str) -> bool:
    if not wanted:
        return True
    if status not in UNRESOLVED:
        return False
    if wanted == "overdue":
        return worst == "breached"
    if wanted == "approaching":
        return worst == "approaching"
    return worst in ("breached", "approaching")


def status_buttons(status: str) -> list[tuple[str, str]]:
    """(action, label) of the status actions the ticket's status allows, in button order."""
    current = domain.Status(status)
    return [(a, ACTION_LABELS[a]) for a in BUTTON_ACTIONS if domain.allowed(current, domain.Action(a))]


def can_escalate(status: str, level: str) -> bool:
    return domain.allowed(domain.Status(status), domain.Action.ESCALATE) and level != "management"


def missing_checklist(ticked: Iterable[str]) -> list[str]:
    """The checklist items not ticked, as the manual words them."""
    done = set(ticked)
    return [text for key, text in ESCALATION_CHECKLIST if key not in done]


# ------------------------------------------------------------------ the audit trail

TIMER_WORDS: Final = {"first_response": "first response", "resolution": "resolution"}


def audit_summary(action: str, data: Mapping[str, Any] | None, names: Mapping[str, str]) -> tuple[str, str]:
    """(what happened, details) of one audit entry, in words; agent ids become names."""
    data = data or {}

    def who(agent_id: Any) -> str:
        return "nobody" if agent_id is None else names.get(str(agent_id), str(agent_id))

    def status(value: Any) -> str:
        return STATUS_LABELS.get(str(value), str(value))

    if action == "created":
        details = f"channel {data.get('channel', '?')}, priority {data.get('priority', '?')}"
        if data.get("reason"):
            details += f", from a chat ({data['reason']})"
        return "Created", details
    if action == "status":
        verb = ACTION_LABELS.get(str(data.get("action")), str(data.get("action", "")).replace("_", " "))
        if data.get("action") == "auto_close":
            verb = "Closed automatically"
        elif data.get("action") == "customer_replied":
            verb = "Customer replied"
        elif data.get("action") in ("assign", "escalate", "merge"):
            verb = str(data["action"]).capitalize()
        return "Status", f"{verb}: {status(data.get('from'))} → {status(data.get('to'))}"
    if action == "assigned":
        return "Assigned", f"{who(data.get('from'))} → {who(data.get('to'))}"
    if action == "escalated":
        level = LEVEL_LABELS.get(str(data.get("level")), str(data.get("level")))
        return "Escalated", f"to {level}, {data.get('type', '?')}: {data.get('reason', '')}"
    if action == "merged":
        if "into" in data:
            return "Merged", f"into #{data['into']}"
        return "Merged", f"#{data.get('merged_from')} merged into this ticket"
    if action.endswith("_changed"):
        field = action[: -len("_changed")]
        return f"{field.capitalize()} changed", f"{data.get('from') or '—'} → {data.get('to') or '—'}"
    if action == "sla_breached":
        return "SLA breached", f"{TIMER_WORDS.get(str(data.get('timer')), data.get('timer'))} target missed"
    if action == "reply":
        return "Reply sent", f"by {data.get('delivery', '?')}"
    if action == "note":
        return "Internal note", ""
    if action == "reminder":
        return "Reminder sent", "to the customer, after 48 h waiting"
    if action == "reopened":
        return "Reopened", "by the customer's reply" if data.get("by") == "customer_reply" else ""
    if action == "csat":
        return "Satisfaction", f"rated {data.get('rating', '?')}"
    return action.replace("_", " ").capitalize(), ", ".join(f"{k}: {v}" for k, v in sorted(data.items()))


def entry_kind(kind: str, role: str, internal: bool) -> tuple[str, str]:
    """(css class, label) of a thread entry: customer messages, replies, internal notes, chat lines."""
    if internal or kind == "note":
        return "entry-note", "Internal note"
    if kind == "reply":
        return "entry-reply", "Reply to customer"
    if kind == "system" or role == "system":
        return "entry-system", "System"
    if role == "visitor":
        return "entry-customer", "Customer"
    if role == "bot":
        return "entry-bot", "Help bot"
    return "entry-agent", "Agent"


CHAT_STATES: Final = {"bot": "with the bot", "waiting": "waiting for an agent", "with_agent": "with an agent",
                      "ended": "ended", "ticketed": "a ticket", "ticket_pending": "becoming a ticket"}


def entry_text(text: str | None, data: Mapping[str, Any] | None) -> str:
    """The text of a thread entry; for the chat's events that have none, what happened, in words."""
    if text:
        data = data or {}
        if data.get("event") == "suggestions" and data.get("articles"):
            titles = "; ".join(str(a.get("title", "")) for a in data["articles"] if isinstance(a, Mapping))
            return f"{text}\n{titles}" if titles else text
        return text
    data = data or {}
    event = data.get("event")
    if event == "state":
        before = CHAT_STATES.get(str(data.get("from")), str(data.get("from")))
        after = CHAT_STATES.get(str(data.get("to")), str(data.get("to")))
        reason = str(data.get("reason") or "").replace("_", " ")
        return f"Chat: {before} → {after}" + (f" ({reason})" if reason else "")
    if event == "feedback":
        return "The customer found the suggested article helpful." if data.get("helpful") else \
            "The customer found the suggested article unhelpful."
    return str(event or "").replace("_", " ").capitalize()
