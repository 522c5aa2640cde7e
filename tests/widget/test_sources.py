"""The widget's sources: the served files are their build, and they stay away from unsafe APIs."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

WIDGET = Path(__file__).parents[2] / "widget"
SOURCES = {name: (WIDGET / name).read_text(encoding="utf-8") for name in ("loader.js", "frame.js")}


def build_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("widget_build", WIDGET / "build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("widget_build", module)
    spec.loader.exec_module(module)
    return module


def test_served_files_are_the_build_of_the_sources() -> None:
    assert build_module().main(["--check"]) == 0, "run: python widget/build.py"


def test_the_build_only_drops_comments_and_indentation() -> None:
    build = build_module()
    for name, source in SOURCES.items():
        kept = [line.strip() for line in source.splitlines()]
        for line in build.strip_js(source).splitlines():
            assert line in kept, f"{name}: the build changed a line: {line!r}"
    with pytest.raises(ValueError):
        build.strip_js("/* a comment */ var x = 1;\n")


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_no_html_string_sinks_or_eval(name: str) -> None:
    code = SOURCES[name]
    for banned in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                   "createContextualFragment", "srcdoc", ".setAttribute(\"style\""):
        assert banned not in code, f"{name} uses {banned}"
    assert not re.search(r"setTimeout\(\s*[\"']", code), f"{name} passes a string to setTimeout"


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_post_message_names_its_target_and_checks_its_sender(name: str) -> None:
    code = SOURCES[name]
    # Window.postMessage, that is; a BroadcastChannel (`bc`) only reaches this origin's own tabs.
    posts = [args for receiver, args in re.findall(r"([\w.]+)\.postMessage\(([^;]*)\);", code) if receiver != "bc"]
    assert posts, name
    for call in posts:
        target = call.rsplit(",", 1)[-1].strip()
        assert target in ("ORIGIN", "host"), f"{name}: postMessage to {target}"
    assert "'*'" not in code and '"*"' not in code
    listener = re.search(r'addEventListener\("message", function \(e\) \{(.*?)\n\}\);', code, re.S)
    assert listener, f"{name} has no message listener"
    body = listener.group(1)
    assert "e.origin !==" in body and "e.source !==" in body, f"{name} must check the sender's origin and window"
    assert "hasOwnProperty" in body or "has(" in body, f"{name} must dispatch through a table of handlers"


def test_links_open_in_a_new_tab_without_a_handle_on_the_chat() -> None:
    frame = SOURCES["frame.js"]
    assert 'a.target = "_blank";' in frame and 'a.rel = "noopener noreferrer";' in frame
    assert 'p.protocol === "https:" || p.protocol === "http:"' in frame
    assert frame.count(".href =") == 1, "every link goes through link(), which only takes checked URLs"
