"""Who gets a new ticket: an available agent who speaks the customer's language and has room, preferring
the category's experts, then senior agents for Pro and PMC customers, then the least loaded, then the
one who has waited longest for a ticket (round robin), then the smallest id.

Languages and skills filter the same way as for live chats (chatsvc/domain/assignment.py): an agent who
lists languages only takes tickets in one of them, an agent who lists skills only takes tickets of those
categories, and an agent who lists none takes any. Seniority is a preference, not a filter: a Pro
customer's ticket goes to a junior agent rather than waiting unassigned when no senior agent can take it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

_NEVER = datetime.min.replace(tzinfo=UTC)

# "By customer tier (Pro/PMC -> senior agents)."
SENIOR_PLANS = frozenset({"pro", "pmc"})


@dataclass(frozen=True)
class TicketAgent:
    id: str
    skills: frozenset[str] = field(default_factory=frozenset)  # categories: billing, technical, onboarding...
    languages: frozenset[str] = field(default_factory=frozenset)  # "en", "fr", "pt-BR"...
    senior: bool = False
    open_tickets: int = 0  # unresolved tickets assigned to the agent now
    max_open_tickets: int | None = None  # None: no limit
    available: bool = True  # on shift and taking tickets
    last_assigned_at: datetime | None = None  # when the agent last got a ticket


@dataclass(frozen=True)
class TicketNeed:
    """What the ticket asks of an agent."""

    category: str | None = None
    language: str | None = None
    plan: str | None = None
    exclude: frozenset[str] = field(default_factory=frozenset)  # agent ids not to choose


def _language(tag: str) -> str:
    """The primary language subtag: "pt-BR", "pt_br" and "PT" all speak "pt"."""
    return tag.strip().lower().replace("_", "-").split("-")[0]


def speaks(agent: TicketAgent, need: TicketNeed) -> bool:
    return not (need.language and agent.languages) or _language(need.language) in {
        _language(lang) for lang in agent.languages}


def handles(agent: TicketAgent, need: TicketNeed) -> bool:
    return not (need.category and agent.skills) or need.category.strip().lower() in {
        skill.strip().lower() for skill in agent.skills}


def premium(need: TicketNeed) -> bool:
    return need.plan is not None and need.plan.strip().lower() in SENIOR_PLANS


def eligible_for_ticket(agent: TicketAgent, need: TicketNeed) -> bool:
    return (
        agent.available
        and agent.id not in need.exclude
        and (agent.max_open_tickets is None or agent.open_tickets < agent.max_open_tickets)
        and speaks(agent, need)
        and handles(agent, need)
    )


def _preference(agent: TicketAgent, need: TicketNeed) -> tuple[bool, bool, bool, int, datetime, str]:
    # False sorts first: an expert, a senior agent for a premium customer, a declared speaker.
    return (
        bool(need.category) and not agent.skills,
        premium(need) and not agent.senior,
        bool(need.language) and not agent.languages,
        agent.open_tickets,
        agent.last_assigned_at or _NEVER,
        agent.id,
    )


def rank_ticket_agents(agents: Sequence[TicketAgent], need: TicketNeed = TicketNeed()) -> list[str]:
    """The ids of the agents who may take the ticket, best first."""
    candidates = [a for a in agents if eligible_for_ticket(a, need)]
    return [a.id for a in sorted(candidates, key=lambda a: _preference(a, need))]


def choose_ticket_agent(agents: Sequence[TicketAgent], need: TicketNeed = TicketNeed()) -> str | None:
    """The id of the agent to assign the ticket to, or None when nobody can take it (it stays new)."""
    ranked = rank_ticket_agents(agents, need)
    return ranked[0] if ranked else None
