"""Ticket auto-assignment: expertise, tier, language, load, then round robin."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from chatsvc.domain.ticket_assignment import (
    TicketAgent,
    TicketNeed,
    choose_ticket_agent,
    eligible_for_ticket,
    rank_ticket_agents,
)

T0 = datetime(2026, 6, 15, 13, 0, tzinfo=UTC)


def agent(id: str, load: int = 0, *, skills: tuple[str, ...] = (), languages: tuple[str, ...] = (),
          senior: bool = False, cap: int | None = None, available: bool = True,
          last: datetime | None = None) -> TicketAgent:
    return TicketAgent(id, frozenset(skills), frozenset(languages), senior, load, cap, available, last)


def test_nobody_available_leaves_the_ticket_unassigned() -> None:
    assert choose_ticket_agent([], TicketNeed()) is None
    assert choose_ticket_agent([agent("a", available=False), agent("b", 3, cap=3)]) is None


def test_experts_before_generalists_and_other_experts_never() -> None:
    agents = [agent("generalist"), agent("billing", 4, skills=("billing",)),
              agent("tech", skills=("technical",))]
    assert choose_ticket_agent(agents, TicketNeed(category="billing")) == "billing"
    assert choose_ticket_agent(agents, TicketNeed(category="Technical")) == "tech"
    assert choose_ticket_agent(agents, TicketNeed(category="onboarding")) == "generalist"
    assert rank_ticket_agents(agents, TicketNeed(category="billing")) == ["billing", "generalist"]


def test_pro_and_pmc_customers_get_senior_agents_first() -> None:
    agents = [agent("junior"), agent("senior", 2, senior=True)]
    assert choose_ticket_agent(agents, TicketNeed(plan="Pro")) == "senior"
    assert choose_ticket_agent(agents, TicketNeed(plan="pmc")) == "senior"
    assert choose_ticket_agent(agents, TicketNeed(plan="growth")) == "junior"
    # Rather a junior agent than nobody.
    assert choose_ticket_agent([agent("junior"), agent("senior", 2, senior=True, available=False)],
                               TicketNeed(plan="pro")) == "junior"


def test_expertise_comes_before_seniority() -> None:
    agents = [agent("senior generalist", senior=True), agent("junior expert", skills=("billing",))]
    assert choose_ticket_agent(agents, TicketNeed(category="billing", plan="pro")) == "junior expert"


def test_language_filters_and_prefers_declared_speakers() -> None:
    agents = [agent("fr", 1, languages=("fr",)), agent("any"), agent("br", 2, languages=("pt-BR", "en"))]
    assert choose_ticket_agent(agents, TicketNeed(language="fr-CA")) == "fr"
    assert choose_ticket_agent(agents, TicketNeed(language="pt")) == "br"
    assert choose_ticket_agent(agents, TicketNeed(language="de")) == "any"
    assert rank_ticket_agents(agents, TicketNeed(language="EN")) == ["br", "any"]


def test_least_loaded_then_longest_waiting_then_id() -> None:
    agents = [agent("b", 1, last=T0), agent("a", 1, last=T0), agent("c", 1, last=T0 - timedelta(hours=1)),
              agent("d", 2, last=None)]
    assert rank_ticket_agents(agents) == ["c", "a", "b", "d"]
    assert choose_ticket_agent([*agents, agent("e", 1)]) == "e"  # never assigned beats anything


def test_excluded_agents_are_skipped() -> None:
    assert choose_ticket_agent([agent("a"), agent("b", 1)], TicketNeed(exclude=frozenset({"a"}))) == "b"


def test_round_robin_over_equal_load() -> None:
    """Assigning nine tickets in turn to three equal agents (each resolving at once) cycles through them."""
    agents = {i: agent(i) for i in ("x", "y", "z")}
    picks = []
    for n in range(9):
        chosen = choose_ticket_agent(list(agents.values()))
        assert chosen is not None
        picks.append(chosen)
        agents[chosen] = agent(chosen, last=T0 + timedelta(minutes=n))
    assert picks == ["x", "y", "z"] * 3


agents_strategy = st.lists(
    st.builds(
        agent,
        st.sampled_from("abcdefgh"),
        st.integers(0, 5),
        skills=st.sampled_from([(), ("billing",), ("technical",), ("billing", "technical")]),
        languages=st.sampled_from([(), ("en",), ("fr",), ("en", "fr")]),
        senior=st.booleans(),
        cap=st.sampled_from([None, 3, 5]),
        available=st.booleans(),
        last=st.one_of(st.none(), st.integers(0, 100).map(lambda m: T0 + timedelta(minutes=m))),
    ),
    max_size=8, unique_by=lambda a: a.id,
)
needs = st.builds(TicketNeed, st.sampled_from([None, "billing", "technical", "onboarding"]),
                  st.sampled_from([None, "en", "fr", "de"]), st.sampled_from([None, "starter", "pro", "pmc"]))


@settings(max_examples=100)
@given(agents_strategy, needs)
def test_the_choice_is_eligible_and_nobody_eligible_is_clearly_better(agents: list[TicketAgent],
                                                                      need: TicketNeed) -> None:
    chosen = choose_ticket_agent(agents, need)
    pool = [a for a in agents if eligible_for_ticket(a, need)]
    if not pool:
        assert chosen is None
        return
    best = next(a for a in pool if a.id == chosen)
    experts = [a for a in pool if need.category and need.category in a.skills]
    if experts:
        assert best in experts
        pool = experts
    if need.plan in ("pro", "pmc") and any(a.senior for a in pool):
        assert best.senior
        pool = [a for a in pool if a.senior]
    speakers = [a for a in pool if need.language and need.language in a.languages]
    if speakers:
        assert best in speakers
        pool = speakers
    assert best.open_tickets == min(a.open_tickets for a in pool)
