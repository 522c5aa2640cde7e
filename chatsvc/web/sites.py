"""The sites that embed the chat widget: one TOML file, each site's look, words and embedding rules.

`CHATSVC_SITES_FILE` names the file; empty means the shipped `sites.toml` (a `default` site for the demo
help center). The file is read again when it changes, so an operator can retitle the bubble without a
restart. Every key is checked: a typo in the file is an error that names the site and the key, never a
silently ignored setting.
"""

from __future__ import annotations

import os
import re
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

SHIPPED_FILE = Path(__file__).with_name("sites.toml")

# Locales written right to left; `dir` of the chat frame follows the site's locale.
RTL_LANGUAGES = frozenset({"ar", "arc", "ckb", "dv", "fa", "he", "ks", "ku", "ps", "sd", "ug", "ur", "yi"})

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# The words of the widget. A site overrides any of them in its `strings` table; `{name}`, `{email}`,
# `{count}` and `{number}` are filled in by the widget.
DEFAULT_STRINGS: dict[str, str] = {
    "title": "Support",
    "subtitle": "Ask a question: the help bot answers right away.",
    "away": "Our team is away right now. The help bot is here, and a person replies by e-mail when we're back.",
    "conversation": "Conversation",
    "close": "Close chat",
    "open": "Open chat",
    "end_chat": "End chat",
    "input_label": "Your message",
    "placeholder": "Write a message…",
    "send": "Send",
    "talk_to_person": "Talk to a person",
    "bot": "Help bot",
    "agent": "Support agent",
    "you": "You",
    "did_it_help": "Did this answer your question?",
    "yes": "Yes",
    "no": "No",
    "helpful_thanks": "Glad it helped!",
    "unhelpful_thanks": "Sorry about that. Ask in other words, or talk to a person.",
    "status_bot": "The help bot answers right away",
    "status_waiting": "Waiting for an agent",
    "status_agent": "Chatting with {name}",
    "status_email": "We'll reply by e-mail",
    "status_ended": "Chat ended",
    "waiting": "Waiting for an agent. Someone will join as soon as they are free.",
    "agent_joined": "{name} joined the chat",
    "agent_left": "{name} left the chat",
    "agent_lost": "{name} was disconnected. We're finding someone else to help you.",
    "transferred": "{name} is now helping you",
    "ticket_pending": "No one can chat right now. We'll reply by e-mail.",
    "ticketed": "Your request is now a ticket. We'll reply by e-mail.",
    "ticket_number": "Ticket {number}",
    "ended": "This chat has ended.",
    "leave_email_instead": "Leave your e-mail instead",
    "email_prompt": "Where should we reply?",
    "email_label": "Your e-mail",
    "email_submit": "Leave e-mail",
    "email_invalid": "Please enter a valid e-mail address.",
    "email_saved": "Thanks! We'll reply to {email}.",
    "prechat": "Before we start, what's your e-mail? We'll reply there if the chat is interrupted.",
    "prechat_submit": "Start chat",
    "reconnecting": "Connection lost. Reconnecting…",
    "unavailable": "Chat is unavailable right now. Please try again later.",
    "sending": "Sending…",
    "sent": "Sent",
    "delivered": "Delivered",
    "read": "Read",
    "not_sent": "Not sent: {reason}",
    "too_long": "the message is too long",
    "typing": "{name} is typing…",
    "new_messages": "new messages: {count}",
    "csat_question": "How was this chat?",
    "csat_good": "Good",
    "csat_okay": "Okay",
    "csat_bad": "Bad",
    "csat_comment": "Anything to add? (optional)",
    "csat_send": "Send rating",
    "csat_thanks": "Thanks for your feedback!",
}

_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
_SITE_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
_LOCALE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
_HOUR = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
_TEXT_LIMIT = 600


class SiteError(ValueError):
    """The sites file is missing, is not TOML, or holds a value the widget cannot use."""


@dataclass(frozen=True)
class Hours:
    timezone: str
    days: tuple[str, ...]
    open: str
    close: str

    def as_json(self) -> dict[str, Any]:
        return {"timezone": self.timezone, "days": list(self.days), "open": self.open, "close": self.close}


@dataclass(frozen=True)
class Site:
    key: str
    title: str
    color: str
    position: str = "right"
    greeting: str = ""
    launcher_label: str = "Chat"
    locale: str = "en"
    origins: tuple[str, ...] = ("*",)
    require_email: bool = False
    csat: bool = True
    hours: Hours | None = None
    strings: dict[str, str] = field(default_factory=dict)

    @property
    def dir(self) -> str:
        return "rtl" if self.locale.split("-")[0].lower() in RTL_LANGUAGES else "ltr"

    @property
    def on_color(self) -> str:
        """Text colour on the brand colour: white or black, whichever reads better. One of the two always
        reaches 4.58:1, above WCAG AA's 4.5:1 for normal text, whatever the brand colour."""
        return "#ffffff" if contrast(self.color, "#ffffff") >= contrast(self.color, "#000000") else "#000000"

    def frame_ancestors(self) -> str:
        """The CSP `frame-ancestors` source list: the pages allowed to embed this site's chat frame."""
        if "*" in self.origins:
            return "*"
        return " ".join(("'self'", *self.origins))

    def as_json(self) -> dict[str, Any]:
        """What the loader and the chat frame need; nothing secret lives here."""
        return {"site": self.key, "title": self.title, "color": self.color, "on_color": self.on_color,
                "position": self.position, "greeting": self.greeting, "launcher_label": self.launcher_label,
                "locale": self.locale, "dir": self.dir, "require_email": self.require_email, "csat": self.csat,
                "hours": self.hours.as_json() if self.hours else None, "strings": self.strings}


def _luminance(colour: str) -> float:
    def channel(hex2: str) -> float:
        c = int(hex2, 16) / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(colour[i:i + 2]) for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    """WCAG 2 contrast ratio of two `#rrggbb` colours, from 1 to 21."""
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


_SITE_KEYS = {"title", "color", "position", "greeting", "launcher_label", "locale", "origins", "require_email",
              "csat", "hours", "strings"}
_HOURS_KEYS = {"timezone", "days", "open", "close"}


def _text(where: str, value: Any, limit: int = _TEXT_LIMIT) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SiteError(f"{where} must be a non-empty string")
    if len(value) > limit:
        raise SiteError(f"{where} is longer than {limit} characters")
    return value


def _hours(where: str, raw: Any) -> Hours:
    if not isinstance(raw, dict):
        raise SiteError(f"{where} must be a table")
    unknown = set(raw) - _HOURS_KEYS
    if unknown or set(raw) != _HOURS_KEYS:
        raise SiteError(f"{where} needs exactly {', '.join(sorted(_HOURS_KEYS))}"
                        + (f" (unknown: {', '.join(sorted(unknown))})" if unknown else ""))
    try:
        ZoneInfo(str(raw["timezone"]))
    except (ZoneInfoNotFoundError, ValueError):
        raise SiteError(f"{where}.timezone {raw['timezone']!r} is not a known time zone") from None
    days = raw["days"]
    if not isinstance(days, list) or not days or any(d not in WEEKDAYS for d in days):
        raise SiteError(f"{where}.days must list days among {', '.join(WEEKDAYS)}")
    for key in ("open", "close"):
        if not isinstance(raw[key], str) or not _HOUR.match(raw[key]):
            raise SiteError(f"{where}.{key} must be a time like \"09:00\"")
    if raw["open"] >= raw["close"]:
        raise SiteError(f"{where}.open must be before close")
    return Hours(raw["timezone"], tuple(days), raw["open"], raw["close"])


def parse_site(key: str, raw: Any) -> Site:
    where = f"sites.{key}"
    if not _SITE_KEY.match(key):
        raise SiteError(f"{where}: a site key is 1-64 letters, digits, '-' or '_'")
    if not isinstance(raw, dict):
        raise SiteError(f"{where} must be a table")
    unknown = set(raw) - _SITE_KEYS
    if unknown:
        raise SiteError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    color = raw.get("color", "#1f6f5c")
    if not isinstance(color, str) or not _COLOUR.match(color):
        raise SiteError(f"{where}.color must be a colour like \"#1f6f5c\"")
    position = raw.get("position", "right")
    if position not in ("right", "left"):
        raise SiteError(f"{where}.position must be \"right\" or \"left\"")
    locale = raw.get("locale", "en")
    if not isinstance(locale, str) or not _LOCALE.match(locale):
        raise SiteError(f"{where}.locale must be a language tag like \"en\" or \"pt-BR\"")
    origins = raw.get("origins", ["*"])
    if not isinstance(origins, list) or not origins:
        raise SiteError(f"{where}.origins must be a list of origins (\"https://www.example.com\") or [\"*\"]")
    for origin in origins:
        if origin != "*" and not (isinstance(origin, str) and _ORIGIN.match(origin)):
            raise SiteError(f"{where}.origins: {origin!r} is not an origin like \"https://www.example.com\"")
    for flag in ("require_email", "csat"):
        if not isinstance(raw.get(flag, flag == "csat"), bool):
            raise SiteError(f"{where}.{flag} must be true or false")
    strings_raw = raw.get("strings", {})
    if not isinstance(strings_raw, dict):
        raise SiteError(f"{where}.strings must be a table")
    unknown = set(strings_raw) - set(DEFAULT_STRINGS)
    if unknown:
        raise SiteError(f"{where}.strings: unknown key(s) {', '.join(sorted(unknown))}")
    strings = dict(DEFAULT_STRINGS)
    strings.update({k: _text(f"{where}.strings.{k}", v) for k, v in strings_raw.items()})
    title = _text(f"{where}.title", raw.get("title", strings["title"]), 80)
    strings["title"] = title
    return Site(
        key=key,
        title=title,
        color=color.lower(),
        position=position,
        greeting=_text(f"{where}.greeting", raw["greeting"]) if "greeting" in raw else "",
        launcher_label=_text(f"{where}.launcher_label", raw.get("launcher_label", "Chat"), 40),
        locale=locale,
        origins=tuple(o.rstrip("/") for o in origins),
        require_email=bool(raw.get("require_email", False)),
        csat=bool(raw.get("csat", True)),
        hours=_hours(f"{where}.hours", raw["hours"]) if "hours" in raw else None,
        strings=strings,
    )


def parse_sites(text: str, source: str = "sites file") -> dict[str, Site]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SiteError(f"{source} is not valid TOML: {exc}") from None
    unknown = set(data) - {"sites"}
    if unknown:
        raise SiteError(f"{source}: unknown top-level key(s) {', '.join(sorted(unknown))}; sites go in [sites.KEY]")
    sites = data.get("sites")
    if not isinstance(sites, dict) or not sites:
        raise SiteError(f"{source} defines no [sites.KEY] table")
    return {key: parse_site(key, raw) for key, raw in sites.items()}


class SiteRegistry:
    """The sites of one file, read again whenever the file changes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._sites: dict[str, Site] = {}

    def sites(self) -> dict[str, Site]:
        try:
            stat = self.path.stat()
        except OSError as exc:
            raise SiteError(f"cannot read the sites file {self.path}: {exc.strerror}") from None
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if stamp != self._stamp:
                self._sites = parse_sites(self.path.read_text(encoding="utf-8"), str(self.path))
                self._stamp = stamp
            return self._sites

    def get(self, key: str) -> Site | None:
        return self.sites().get(key)


_registries: dict[str, SiteRegistry] = {}


def registry(sites_file: str) -> SiteRegistry:
    """The registry for `CHATSVC_SITES_FILE` (empty: the shipped file)."""
    path = sites_file or str(SHIPPED_FILE)
    found = _registries.get(path)
    if found is None:
        found = _registries[path] = SiteRegistry(path)
    return found
