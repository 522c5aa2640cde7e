"""Macros: the built-ins render, and anything beyond plain variables is refused when saved."""

from __future__ import annotations

import pytest

from chatsvc.tickets.macros import (
    BUILTIN_MACROS,
    FILTERS,
    MAX_BODY_CHARS,
    VARIABLES,
    Macro,
    MacroError,
    render_macro,
    validate_macro,
    variables_used,
)

CONTEXT = {
    "customer_name": "Ana Souza", "customer_email": "ana@example.com", "community_name": "Maple Court",
    "plan": "Pro", "ticket_id": 4821, "subject": "Dark mode for the resident app", "agent_name": "Sam",
}


def test_the_six_builtin_macros_of_the_manual() -> None:
    assert [m.name for m in BUILTIN_MACROS] == [
        "Password Reset", "Payment Retry", "Browser Cache", "Feature Request", "Refund Request",
        "Trial Extension"]
    assert len({m.id for m in BUILTIN_MACROS}) == 6


@pytest.mark.parametrize("macro", BUILTIN_MACROS, ids=lambda m: m.id)
def test_builtin_macros_render_with_the_customers_details(macro: Macro) -> None:
    text = macro.render(CONTEXT)
    assert text.startswith("Hi Ana Souza,\n\n")
    assert text.endswith("Sam\nTicket 4821")
    assert "{" not in text and "}" not in text
    assert len(text) > 400  # real help, not a placeholder


@pytest.mark.parametrize("macro", BUILTIN_MACROS, ids=lambda m: m.id)
def test_builtin_macros_cope_with_empty_details(macro: Macro) -> None:
    text = macro.render(dict.fromkeys(VARIABLES) | {"agent_name": "Sam", "ticket_id": 7})
    assert text.startswith("Hi there,\n\n")
    assert "None" not in text and "  " not in text


def test_variables_filters_and_conditions() -> None:
    body = ("{{ customer_name|title }} / {{ plan|lower }}{% if plan == 'Pro' or plan == 'pmc' %} (priority)"
            "{% elif not plan %} (no plan){% else %} ({{ plan|upper }}){% endif %}\n"
            "{{- ' ' ~ '' if false else '' }}{{ subject|default('your question', true)|trim }}")
    with pytest.raises(MacroError, match="`~`"):
        validate_macro(body)
    body = ("{{ customer_name|title }} / {{ plan|lower }}{% if plan == 'Pro' or plan == 'pmc' %} (priority)"
            "{% elif not plan %} (no plan){% else %} ({{ plan|upper }}){% endif %}: "
            "{{ subject|default('your question', true)|trim }}{# a comment #}{% raw %} {{ x }}{% endraw %}")
    validate_macro(body)
    assert variables_used(body) == {"customer_name", "plan", "subject"}
    assert render_macro(body, {"customer_name": "ana souza", "plan": "Pro", "subject": " Export "}) == (
        "Ana Souza / pro (priority): Export {{ x }}")
    assert render_macro(body, {"customer_name": "x", "plan": "", "subject": ""}) == (
        "X /  (no plan): your question {{ x }}")
    growth = {"customer_name": "x", "plan": "growth", "subject": "s"}
    assert render_macro(body, growth) == "X / growth (GROWTH): s {{ x }}"


def test_values_are_text_and_never_templates() -> None:
    sneaky = {"customer_name": "{{ config }} {% for x in y %}", "ticket_id": 12}
    assert render_macro("Hi {{ customer_name }}, #{{ ticket_id }}", sneaky) == (
        "Hi {{ config }} {% for x in y %}, #12")


def test_extra_context_is_ignored_and_missing_values_are_named() -> None:
    assert render_macro("Hi {{ customer_name }}", {"customer_name": "Ana", "password": "x"}) == "Hi Ana"
    with pytest.raises(MacroError, match=r"no value for \{\{ agent_name \}\}, \{\{ plan \}\}"):
        render_macro("{{ plan }} {{ agent_name }} {{ customer_name }}", {"customer_name": "Ana"})


INJECTIONS = [
    ("{{ ''.__class__ }}", r"attribute access \(`.__class__`\)"),
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", r"calls \(`__subclasses__\(...\)`\)"),
    ("{{ cycler.__init__ }}", r"attribute access \(`.__init__`\)"),
    ("{{ cycler }}", r"unknown variable \{\{ cycler \}\}"),
    ("{% for x in range(10**9) %}x{% endfor %}", "loops are not allowed"),
    ("{% for c in customer_name %}{{ c }}{% endfor %}", "loops are not allowed"),
    ("{{ customer_name.upper() }}", r"calls \(`upper\(...\)`\)"),
    ("{{ config }}", r"unknown variable \{\{ config \}\}; allowed: customer_name"),
    ("{{ self }}", r"unknown variable \{\{ self \}\}"),
    ("{{ request.environ }}", r"attribute access"),
    ("{{ lipsum() }}", r"calls \(`lipsum\(...\)`\)"),
    ("{{ customer_name[0] }}", r"item access"),
    ("{{ customer_name['__class__'] }}", r"item access"),
    ("{{ customer_name|attr('__class__') }}", "filter 'attr' is not allowed; allowed: default, upper"),
    ("{{ customer_name|format('%s') }}", "filter 'format' is not allowed"),
    ("{{ customer_name|default(config) }}", "filter 'default' takes only constant arguments"),
    ("{{ customer_name|default(d='x') }}", "filter 'default' takes only constant arguments"),
    ("{{ 'a' * 1000000000 }}", "arithmetic"),
    ("{{ 10**9 }}", "arithmetic"),
    ("{{ 7 }}", "only text constants"),
    ("{% set x = customer_name %}{{ x }}", "setting variables is not allowed"),
    ("{% with x = 1 %}{% endwith %}", "setting variables is not allowed"),
    ("{% import 'os' as os %}", "imports, includes and extends are not allowed"),
    ("{% from 'x' import y %}", "imports, includes and extends are not allowed"),
    ("{% include 'other' %}", "imports, includes and extends are not allowed"),
    ("{% extends 'base' %}", "imports, includes and extends are not allowed"),
    ("{% macro m() %}x{% endmacro %}", "macros and blocks are not allowed"),
    ("{% block b %}x{% endblock %}", "macros and blocks are not allowed"),
    ("{% filter upper %}x{% endfilter %}", r"`\{% filter %\}` blocks are not allowed"),
    ("{% if customer_name is defined %}x{% endif %}", r"tests \(`is ...`\) are not allowed"),
    ("{% if plan in ['pro'] %}x{% endif %}", "only `==` and `!=`"),
    ("{% if plan > 'a' %}x{% endif %}", "only `==` and `!=`"),
    ("{{ [customer_name] }}", "lists, tuples and dicts are not allowed"),
    ("{% do x %}", "syntax error"),
    ("{{ customer_name ", "syntax error"),
    ("Hello\n\n{{ customer_name.__class__ }}", r"^line 3: attribute access"),
]


@pytest.mark.parametrize(("body", "problem"), INJECTIONS, ids=[b for b, _ in INJECTIONS])
def test_anything_else_is_refused_at_save_time_naming_the_problem(body: str, problem: str) -> None:
    with pytest.raises(MacroError, match=problem):
        validate_macro(body)
    with pytest.raises(MacroError):
        Macro("custom", "Custom", body)
    with pytest.raises(MacroError):
        render_macro(body, CONTEXT)


@pytest.mark.parametrize("body", [
    "{{ " + "(" * 3000 + "customer_name" + ")" * 3000 + " }}",
    "{{ " + "not " * 2400 + "plan }}",
    "{{ " + "not " * 40 + "plan }}",
    "{{ customer_name" + "|trim" * 300 + " }}",
    "{% if plan %}" * 150 + "{% endif %}" * 150,
], ids=["parentheses", "not-2400", "not-40", "filters-300", "ifs-150"])
def test_deep_nesting_is_refused_not_crashing(body: str) -> None:
    with pytest.raises(MacroError, match="nested too deeply"):
        validate_macro(body)


def test_reasonable_nesting_renders() -> None:
    body = "{% if plan %}" * 10 + "{{ " + "not " * 10 + "plan }}{{ customer_name" + "|trim" * 20 + " }}"
    body += "{% endif %}" * 10
    assert render_macro(body, {"plan": "pro", "customer_name": " Ana "}) == "TrueAna"  # ten nots cancel out


def test_long_bodies_and_empty_names_are_refused() -> None:
    validate_macro("x" * MAX_BODY_CHARS)
    with pytest.raises(MacroError, match="at most"):
        validate_macro("x" * (MAX_BODY_CHARS + 1))
    with pytest.raises(MacroError, match="id and a name"):
        Macro(" ", "Name", "Hi")


def test_the_render_environment_has_only_the_allowed_filters_and_no_globals() -> None:
    from chatsvc.tickets.macros import _ENV

    assert set(_ENV.filters) == set(FILTERS)
    assert not _ENV.globals and not _ENV.tests
