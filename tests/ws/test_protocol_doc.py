"""docs/protocol.md is the contract: every frame, error code and close code in the code is documented."""

from __future__ import annotations

import re
import typing
from pathlib import Path

from chatsvc.ws import protocol

DOC = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text()


def section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", DOC, re.S | re.M)
    assert match, f"docs/protocol.md has no section {title!r}"
    return match.group(1)


def headings(text: str) -> set[str]:
    return set(re.findall(r"^### `([a-z_]+)`", text, re.M))


def tags(union: object) -> set[str]:
    return {t.__struct_config__.tag for t in union.__args__}  # type: ignore[attr-defined]


def test_every_frame_type_is_documented_in_its_direction() -> None:
    assert headings(section("Visitor → server")) == tags(protocol.VisitorFrame)
    assert headings(section("Agent → server")) == tags(protocol.AgentFrame)
    assert headings(section("Server → client")) == tags(protocol.AgentServerFrame) | tags(protocol.VisitorServerFrame)


def test_every_error_code_is_documented() -> None:
    codes = {v for k, v in vars(protocol.ErrorCode).items() if k.isupper()}
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", section("Error codes"), re.M))
    assert documented == codes


def test_every_close_code_is_documented() -> None:
    codes = {v for k, v in vars(protocol.CloseCode).items() if k.isupper()}
    documented = {int(c) for c in re.findall(r"^\| (\d{4}) \|", section("Close codes"), re.M)}
    assert codes <= documented


def test_protocol_level_matches() -> None:
    assert f"Protocol level: **{protocol.PROTOCOL_LEVEL}**" in DOC
    assert f"- Level {protocol.PROTOCOL_LEVEL}:" in section("Changelog")


def test_event_kinds_are_documented() -> None:
    table = set(re.findall(r"^\| `([a-z_]+)` \|", section("Server → client"), re.M))
    kinds = set(typing.get_args(typing.get_type_hints(protocol.Event)["kind"]))
    assert kinds and kinds <= table
