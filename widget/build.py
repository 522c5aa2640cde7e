"""Build the widget: copy the plain-JS sources in this folder to the files chatsvc serves, minus comments.

    python widget/build.py          # write chatsvc/web/static/widget/
    python widget/build.py --check  # exit 1 if the served files are not what the sources build to

There is no bundler and nothing to install: the sources are the program. The build only drops comment
lines and indentation (the served files are smaller before gzip, and gzip is what the budget measures),
never joins lines, so it cannot change what a line of code means. tests/widget/test_build.py runs
`--check`.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "chatsvc" / "web" / "static" / "widget"
SOURCES = ("loader.js", "frame.js", "frame.css")
BANNER = "/*! chatsvc widget, Apache-2.0, source: widget/{name} */\n"


def strip_js(source: str) -> str:
    """Drop whole-line `//` comments, block comments that start a line, indentation and blank lines."""
    out: list[str] = []
    in_block = False
    for line in source.splitlines():
        text = line.strip()
        if in_block:
            if "*/" in text:
                in_block = False
                if text.split("*/", 1)[1].strip():
                    raise ValueError(f"code after a block comment on one line: {line!r}")
            continue
        if text.startswith("/*"):
            if "*/" not in text:
                in_block = True
            elif not text.endswith("*/"):
                raise ValueError(f"code after a block comment on one line: {line!r}")
            continue
        if not text or text.startswith("//"):
            continue
        out.append(text)
    return "\n".join(out) + "\n"


def strip_css(source: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", source, flags=re.S)
    text = "".join(line.strip() for line in text.splitlines() if line.strip())
    text = re.sub(r"\s*\{\s*", "{", text)
    return text.replace(";}", "}") + "\n"


def build() -> dict[str, str]:
    built = {}
    for name in SOURCES:
        source = (HERE / name).read_text(encoding="utf-8")
        body = strip_css(source) if name.endswith(".css") else strip_js(source)
        built[name] = BANNER.format(name=name) + body
    return built


def main(argv: list[str]) -> int:
    built = build()
    if "--check" in argv:
        stale = [n for n, text in built.items()
                 if not (OUT / n).exists() or (OUT / n).read_text(encoding="utf-8") != text]
        if stale:
            print(f"out of date: {', '.join(stale)}; run python widget/build.py", file=sys.stderr)
            return 1
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in built.items():
        (OUT / name).write_text(text, encoding="utf-8")
        print(f"{OUT / name}: {len(text.encode())} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
