"""Who gets offered a waiting conversation: least busy eligible online agent, ties to longest idle."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

_NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class AgentLoad:
    id: str
    presence: str  # online | away | offline
    active_chats: int
    capacity: int
    last_assigned_at: datetime | None = None
    skills: frozenset[str] = field(default_factory=frozenset)
    languages: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Need:
    """What the waiting conversation asks of an agent."""

    category: str | None = None
    language: str | None = None


Filter = Callable[[AgentLoad, Need], bool]


def speaks_language(agent: AgentLoad, need: Need) -> bool:
    """Agents who list languages only take conversations in one of them; others take any."""
    return not (need.language and agent.languages) or need.language in agent.languages


def has_skill(agent: AgentLoad, need: Need) -> bool:
    """Agents who list skills only take conversations of those categories (uncategorised ones too)."""
    return not (need.category and agent.skills) or need.category in agent.skills


DEFAULT_FILTERS: tuple[Filter, ...] = (speaks_language, has_skill)


def eligible(agent: AgentLoad, need: Need, filters: Iterable[Filter] = DEFAULT_FILTERS) -> bool:
    return (
        agent.presence == "online"
        and agent.active_chats < agent.capacity
        and all(f(agent, need) for f in filters)
    )


def choose_agent(
    agents: Sequence[AgentLoad],
    need: Need = Need(),
    exclude: Iterable[str] = (),
    filters: Iterable[Filter] = DEFAULT_FILTERS,
) -> str | None:
    """The id of the agent to offer the conversation to, or None when nobody can take it."""
    excluded = set(exclude)
    filters = tuple(filters)
    candidates = [a for a in agents if a.id not in excluded and eligible(a, need, filters)]
    if not candidates:
        return None
    best = min(candidates, key=lambda a: (a.active_chats, a.last_assigned_at or _NEVER, a.id))
    return best.id
