from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from chatsvc.domain.assignment import AgentLoad, Need, choose_agent, eligible

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def agent(id: str, active: int = 0, *, presence: str = "online", capacity: int = 3,
          last: datetime | None = None, skills: tuple[str, ...] = (), languages: tuple[str, ...] = ()) -> AgentLoad:
    return AgentLoad(id, presence, active, capacity, last, frozenset(skills), frozenset(languages))


def test_least_busy_online_agent_wins() -> None:
    assert choose_agent([agent("a", 2), agent("b", 1), agent("c", 0, presence="away")]) == "b"


def test_ties_go_to_the_longest_idle() -> None:
    agents = [agent("a", 1, last=T0), agent("b", 1, last=T0 - timedelta(hours=1)), agent("c", 1, last=None)]
    assert choose_agent(agents) == "c"  # never assigned beats anything
    assert choose_agent(agents[:2]) == "b"


def test_full_away_offline_and_excluded_agents_are_skipped() -> None:
    agents = [agent("full", 3), agent("away", presence="away"), agent("off", presence="offline"), agent("x")]
    assert choose_agent(agents, exclude=["x"]) is None
    assert choose_agent(agents) == "x"


def test_language_and_skill_filters() -> None:
    agents = [agent("fr", languages=("fr",)), agent("billing", 1, skills=("billing",)), agent("any", 2)]
    assert choose_agent(agents, Need(language="fr")) == "fr"
    assert choose_agent(agents, Need(language="de")) == "billing"
    assert choose_agent(agents, Need(category="technical", language="de")) == "any"
    assert choose_agent(agents, Need(category="billing", language="de")) == "billing"


def test_filters_are_pluggable() -> None:
    agents = [agent("a"), agent("b", 1)]
    assert choose_agent(agents, filters=[lambda a, need: a.id == "b"]) == "b"


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(1, 5), st.sampled_from(["online", "away", "offline"]),
                          st.integers(0, 100)), max_size=12))
def test_choice_is_eligible_and_least_busy(rows: list[tuple[int, int, str, int]]) -> None:
    agents = [agent(f"a{i}", active, capacity=cap, presence=presence, last=T0 + timedelta(minutes=m))
              for i, (active, cap, presence, m) in enumerate(rows)]
    chosen = choose_agent(agents)
    pool = [a for a in agents if eligible(a, Need())]
    if not pool:
        assert chosen is None
        return
    best = next(a for a in agents if a.id == chosen)
    assert best in pool
    assert best.active_chats == min(a.active_chats for a in pool)
