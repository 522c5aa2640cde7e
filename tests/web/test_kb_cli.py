"""`chatsvc kb import` and `chatsvc kb export`."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatsvc.cli import main
from chatsvc.server_commands import DEMO_HELPCENTER


def test_import_reports_changes_and_broken_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'kb.db'}"
    folder = tmp_path / "articles"
    folder.mkdir()
    (folder / "one.md").write_text("---\nid: one\ntitle: One\n---\nFirst body.\n")
    (folder / "two.md").write_text("---\nid: two\ntitle: Two\n---\nSecond body.\n")
    (folder / "broken.md").write_text("---\nid: [unclosed\ntitle: Broken\n---\nbody\n")
    assert main(["kb", "import", str(folder), "--database-url", url]) == 1
    captured = capsys.readouterr()
    assert "added: one" in captured.out and "added: two" in captured.out
    assert "broken.md" in captured.err
    assert "2 added, 0 updated, 0 unchanged" in captured.out

    (folder / "broken.md").unlink()
    (folder / "two.md").write_text("---\nid: two\ntitle: Two, revised\n---\nSecond body.\n")
    assert main(["kb", "import", str(folder), "--database-url", url]) == 0
    out = capsys.readouterr().out
    assert "updated: two" in out and "0 added, 1 updated, 1 unchanged" in out

    jsonl = tmp_path / "kb.jsonl"
    jsonl.write_text('{"id": "three", "title": "Three", "body": "b", "tags": ["x"]}\n{"id": \n')
    assert main(["kb", "import", str(jsonl), "--database-url", url]) == 1
    captured = capsys.readouterr()
    assert "added: three" in captured.out and "kb.jsonl" in captured.err and "2" in captured.err

    out_dir = tmp_path / "export"
    assert main(["kb", "export", str(out_dir), "--database-url", url]) == 0
    assert "exported 3 article(s)" in capsys.readouterr().out
    assert sorted(p.name for p in out_dir.iterdir()) == ["one.md", "three.md", "two.md"]
    assert main(["kb", "export", str(tmp_path / "all.jsonl"), "--database-url", url]) == 0
    assert len((tmp_path / "all.jsonl").read_text().splitlines()) == 3


def test_the_demo_help_center_imports_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}"
    assert main(["kb", "import", str(DEMO_HELPCENTER), "--database-url", url]) == 0
    out = capsys.readouterr().out
    added = int(out.strip().splitlines()[-1].split(" added")[0])
    assert added >= 40


def test_import_of_a_missing_path_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kb", "import", str(tmp_path / "nope"), "--database-url", f"sqlite:///{tmp_path}/x.db"]) == 2
    assert "does not exist" in capsys.readouterr().err
