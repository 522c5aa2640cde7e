"""Macros: canned replies with a few variables, checked when they are saved and rendered in a sandbox.

A macro body is a Jinja2 template limited to what a reply needs:

- the variables in VARIABLES, e.g. `Hi {{ customer_name }}`;
- the filters in FILTERS, with constant arguments: `{{ customer_name|default("there", true) }}`;
- `{% if %}` / `{% elif %}` / `{% else %}` on those variables, with `==`, `!=`, `and`, `or`, `not`,
  and `{{ a if b else "c" }}`;
- comments, whitespace control (`{{- x -}}`) and `{% raw %}`.

Anything else (attribute or item access, calls, loops, `{% set %}`, imports, includes, other variables
or filters) is refused by `validate_macro` with a MacroError that names it. The check walks the parsed
template, so nothing is ever executed to find out; rendering then happens in Jinja2's immutable sandbox
with only the allowed variables and filters defined, as a second wall. Without loops or arithmetic, the
output can never be much longer than the body and the values put into it.

The output is plain text. Whoever displays it as HTML escapes it, like any other message.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

# The values a macro may use, and what each holds.
VARIABLES: Mapping[str, str] = {
    "customer_name": "the customer's name as on the ticket",
    "customer_email": "the customer's email address",
    "community_name": "the customer's community",
    "plan": "the customer's plan (Starter, Growth, Pro)",
    "ticket_id": "the ticket number, e.g. 4821",
    "subject": "the ticket's subject",
    "agent_name": "the name of the agent sending the reply",
}
FILTERS = ("default", "upper", "lower", "title", "capitalize", "trim")
MAX_BODY_CHARS = 10_000
# Deeper syntax trees compile to Python nested beyond what its compiler accepts; real replies need a few.
MAX_DEPTH = 32


class MacroError(ValueError):
    """A macro body that may not be saved or rendered; the message names the problem."""

    def __init__(self, message: str, lineno: int | None = None) -> None:
        super().__init__(f"line {lineno}: {message}" if lineno else message)
        self.lineno = lineno


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False,
                                        keep_trailing_newline=True)
    env.filters = {name: env.filters[name] for name in FILTERS}
    env.globals.clear()  # range, lipsum, cycler, joiner, namespace, dict
    env.tests.clear()
    return env


_ENV = _environment()

_ALWAYS_ALLOWED = (nodes.Template, nodes.Output, nodes.TemplateData, nodes.If, nodes.Not, nodes.And, nodes.Or,
                   nodes.CondExpr)
_REFUSED: list[tuple[type[nodes.Node] | tuple[type[nodes.Node], ...], str]] = [
    ((nodes.Getitem, nodes.Slice), "item access (`[...]`) is not allowed"),
    ((nodes.Call, nodes.CallBlock), "calls are not allowed"),
    (nodes.For, "loops are not allowed"),
    ((nodes.Assign, nodes.AssignBlock, nodes.With, nodes.NSRef), "setting variables is not allowed"),
    ((nodes.Import, nodes.FromImport, nodes.Include, nodes.Extends),
     "imports, includes and extends are not allowed"),
    ((nodes.Macro, nodes.Block, nodes.Scope, nodes.OverlayScope), "macros and blocks are not allowed"),
    (nodes.FilterBlock, "`{% filter %}` blocks are not allowed; filter a variable instead"),
    (nodes.Test, "tests (`is ...`) are not allowed"),
    ((nodes.BinExpr, nodes.UnaryExpr, nodes.Concat), "arithmetic and the `~` operator are not allowed"),
    ((nodes.Tuple, nodes.List, nodes.Dict, nodes.Pair, nodes.Keyword),
     "lists, tuples and dicts are not allowed"),
]


def _walk(node: nodes.Node, depth: int = 0) -> Iterator[str]:
    """Check one node and its children; yield the variable names used."""
    if depth > MAX_DEPTH:
        raise MacroError(f"the macro is nested too deeply (more than {MAX_DEPTH} levels)", node.lineno)
    if isinstance(node, nodes.Name):
        if node.name not in VARIABLES or node.ctx != "load":
            raise MacroError(f"unknown variable {{{{ {node.name} }}}}; allowed: {', '.join(VARIABLES)}",
                             node.lineno)
        yield node.name
        return
    if isinstance(node, nodes.Const):
        if not isinstance(node.value, str | bool):
            raise MacroError(f"only text constants are allowed, not {node.value!r}", node.lineno)
        return
    if isinstance(node, nodes.Filter):
        if node.name not in FILTERS:
            allowed = ", ".join(FILTERS)
            raise MacroError(f"filter {node.name!r} is not allowed; allowed: {allowed}", node.lineno)
        if node.kwargs or node.dyn_args or node.dyn_kwargs or not all(
                isinstance(arg, nodes.Const) for arg in node.args):
            raise MacroError(f"filter {node.name!r} takes only constant arguments", node.lineno)
    elif isinstance(node, nodes.Compare):
        if not all(op.op in ("eq", "ne") for op in node.ops):
            raise MacroError("only `==` and `!=` comparisons are allowed", node.lineno)
    elif isinstance(node, nodes.Operand):
        pass
    elif isinstance(node, nodes.Getattr):
        raise MacroError(f"attribute access (`.{node.attr}`) is not allowed", node.lineno)
    elif isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr | nodes.Name):
        callee = node.node.attr if isinstance(node.node, nodes.Getattr) else node.node.name
        raise MacroError(f"calls (`{callee}(...)`) are not allowed", node.lineno)
    elif not isinstance(node, _ALWAYS_ALLOWED):
        for kinds, message in _REFUSED:
            if isinstance(node, kinds):
                raise MacroError(message, node.lineno)
        raise MacroError(f"{type(node).__name__} is not allowed in a macro", node.lineno)
    for child in node.iter_child_nodes():
        yield from _walk(child, depth + 1)


def variables_used(body: str) -> frozenset[str]:
    """The variables a valid macro body uses; MacroError when the body is not a valid macro."""
    if not isinstance(body, str):
        raise MacroError("a macro body is text")
    if len(body) > MAX_BODY_CHARS:
        raise MacroError(f"a macro body is at most {MAX_BODY_CHARS} characters, this one has {len(body)}")
    try:
        return frozenset(_walk(_ENV.parse(body)))
    except TemplateSyntaxError as error:
        raise MacroError(f"syntax error: {error.message}", error.lineno) from None
    except RecursionError:
        raise MacroError("the macro is nested too deeply") from None


def validate_macro(body: str) -> None:
    """Raise MacroError naming the first thing a macro may not do; return None for a valid body."""
    variables_used(body)


def render_macro(body: str, context: Mapping[str, object]) -> str:
    """The reply text. Values are turned into text (None into ""); keys that are not variables are ignored;
    a variable the body uses but the context lacks is a MacroError."""
    used = variables_used(body)
    missing = sorted(used - context.keys())
    if missing:
        raise MacroError("no value for " + ", ".join(f"{{{{ {name} }}}}" for name in missing))
    values = {name: "" if context[name] is None else str(context[name]) for name in used}
    try:
        return _ENV.from_string(body).render(values)
    except (TemplateError, SyntaxError, RecursionError) as error:  # validation should have refused it
        raise MacroError(f"cannot render: {error}") from None


@dataclass(frozen=True)
class Macro:
    """A saved canned reply. Constructing one validates its body, so a Macro is always renderable."""

    id: str
    name: str
    body: str

    def __post_init__(self) -> None:
        if not self.id.strip() or not self.name.strip():
            raise MacroError("a macro needs an id and a name")
        validate_macro(self.body)

    def render(self, context: Mapping[str, object]) -> str:
        return render_macro(self.body, context)


_HELLO = "Hi {{ customer_name|default('there', true) }},\n\n"
_SIGNATURE = "\n\nBest regards,\n{{ agent_name }}\nTicket {{ ticket_id }}"

BUILTIN_MACROS: list[Macro] = [
    Macro("password-reset", "Password Reset", _HELLO + (
        "Thanks for getting in touch. You can set a new password yourself in about a minute:\n\n"
        "1. Go to the sign-in page and click \"Forgot password?\" under the password field.\n"
        "2. Enter {{ customer_email|default('the email address you use for your account', true) }} "
        "and click \"Send reset link\".\n"
        "3. Open the email titled \"Reset your password\" and click the button inside it.\n"
        "4. Choose a new password of at least 10 characters and confirm it.\n\n"
        "The link works once and expires after 60 minutes; if it has expired, just request a new one. "
        "If the email doesn't arrive within a few minutes, check your spam or junk folder, and reply to "
        "this message if it still isn't there. We will never ask you for your password."
    ) + _SIGNATURE),
    Macro("payment-retry", "Payment Retry", _HELLO + (
        "I'm sorry the last payment for {{ community_name|default('your community', true) }} didn't go "
        "through. Your community keeps working while we sort it out. To pay now:\n\n"
        "1. Go to Billing → Invoices and find the invoice marked \"Past due\".\n"
        "2. Click \"Pay now\". You can use the card on file or enter a different one for this payment.\n"
        "3. If your bank asks you to approve the payment, complete that step in the window that opens.\n\n"
        "If the card has expired or changed, update it under Billing → Payment method first: that also "
        "retries the invoice straight away. If the card is fine, your bank may have blocked the charge; a "
        "quick call or a tap in their app usually clears it. Otherwise we retry automatically 3, 5 and 7 "
        "days after the first failure.\n\n"
        "Reply here if the payment fails again and I'll look at the reason our payment provider gave."
    ) + _SIGNATURE),
    Macro("browser-cache", "Browser Cache", _HELLO + (
        "When pages don't load, keep spinning or show an old version, the cause is very often an "
        "outdated copy of the site stored by your browser. Could you try these steps?\n\n"
        "1. Hard refresh the page: Ctrl + Shift + R on Windows and Linux, Cmd + Shift + R on a Mac.\n"
        "2. If that doesn't help, clear cached images and files and cookies for our site in your "
        "browser's privacy settings, then sign in again.\n"
        "3. Try a private or incognito window. If it works there, a browser extension (often an ad "
        "blocker) is interfering: disable extensions one at a time to find it.\n\n"
        "If none of this works, please reply with your browser name and version and a screenshot of "
        "the problem, and I'll take it from there."
    ) + _SIGNATURE),
    Macro("feature-request", "Feature Request", _HELLO + (
        "Thank you for taking the time to suggest this. I've passed your request"
        "{% if subject %} (\"{{ subject }}\"){% endif %} to our product team, together with how "
        "you described using it at {{ community_name|default('your community', true) }}.\n\n"
        "We read every suggestion and use them to decide what to build next. I can't promise a date, "
        "but if it is planned we will let you know, and you will see it in our release notes.\n\n"
        "If there is anything else that would make it more useful to you, just reply to this message."
    ) + _SIGNATURE),
    Macro("refund-request", "Refund Request", _HELLO + (
        "Thanks for your message about a refund. Here is how it works:\n\n"
        "- Annual plans: cancelling within 30 days of a new annual charge gets a full refund.\n"
        "- Monthly charges are not refunded, but you keep access until the end of the month paid for.\n"
        "- Duplicate or mistaken charges are always refunded in full.\n\n"
        "I've sent your request to our finance team. They review each one within two business days and "
        "reply by email{% if customer_email %} to {{ customer_email }}{% endif %}. To speed things up, "
        "please reply with the invoice number (for example INV-2026-0142) if it isn't in your message.\n\n"
        "Approved refunds go back to the original card or bank account and usually appear within three "
        "to ten business days, depending on your bank."
    ) + _SIGNATURE),
    Macro("trial-extension", "Trial Extension", _HELLO + (
        "Thanks for letting us know you need a little more time. I've extended the free trial for "
        "{{ community_name|default('your community', true) }} by 14 days; the new end date is shown on "
        "the trial banner in your dashboard.\n\n"
        "Everything you set up stays as it is. When you're ready, choose a plan and add a payment method "
        "under Billing → Plans and nothing changes for your residents. A trial can usually be extended "
        "once, so if your board needs longer still, reply here and we'll find a solution together."
    ) + _SIGNATURE),
]
