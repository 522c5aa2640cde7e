"""Backup and restore of the store: `chatsvc backup PATH` and `chatsvc restore PATH` (docs/operations.md).

- SQLite: SQLite's online backup API, in one step. It reads one consistent snapshot while the server keeps
  writing (WAL mode: readers never block the writer), so every message acknowledged before the backup
  started is in it. The copy is checked with `PRAGMA integrity_check` before it is kept.
- PostgreSQL: `pg_dump --format=custom` (one consistent snapshot, online) and `pg_restore` into an empty
  database. The password of the URL goes to the tools through PGPASSWORD, never on a command line.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from sqlalchemy.engine import make_url

from chatsvc.store.db import normalise_url


class BackupError(Exception):
    """The backup or restore did not happen; the message says why."""


@dataclass(frozen=True)
class Outcome:
    path: Path
    size: int
    what: str


def _is_sqlite(url: str) -> bool:
    return normalise_url(url).startswith("sqlite")


def sqlite_path(url: str) -> Path:
    database = make_url(normalise_url(url)).database
    if not database or database == ":memory:":
        raise BackupError("an in-memory SQLite store cannot be backed up")
    return Path(database).expanduser().resolve()


def libpq(url: str) -> tuple[str, dict[str, str]]:
    """A postgresql:// URL the command-line tools understand, and the environment carrying its password."""
    parsed = make_url(normalise_url(url))
    env = {"PGPASSWORD": parsed.password} if parsed.password else {}
    user = quote(parsed.username or "", safe="")
    netloc = f"{user}@" if user else ""
    netloc += parsed.host or ""
    if parsed.port:
        netloc += f":{parsed.port}"
    query = "&".join(f"{k}={v}" for k, v in parsed.query.items() if isinstance(v, str))
    return f"postgresql://{netloc}/{parsed.database or ''}" + (f"?{query}" if query else ""), env


def _check_sqlite(path: Path) -> None:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        result = conn.execute("PRAGMA integrity_check").fetchone()
    if not result or result[0] != "ok":
        raise BackupError(f"{path} fails SQLite's integrity check: {result}")


def backup(url: str, dest: Path) -> Outcome:
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    partial.unlink(missing_ok=True)
    if _is_sqlite(url):
        source = sqlite_path(url)
        if not source.exists():
            raise BackupError(f"no SQLite store at {source}")
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
        try:
            dst = sqlite3.connect(partial)
            try:
                src.backup(dst)  # pages=-1: one step, one consistent snapshot
            finally:
                dst.close()
        finally:
            src.close()
        _check_sqlite(partial)
        what = "SQLite online backup"
    else:
        target, env = libpq(url)
        _run(["pg_dump", "--format=custom", "--no-owner", "--no-privileges", f"--file={partial}",
              f"--dbname={target}"], env)
        what = "pg_dump (custom format)"
    os.replace(partial, dest)
    return Outcome(dest, dest.stat().st_size, what)


def restore(source: Path, url: str, *, force: bool = False) -> Outcome:
    """Put a backup in place. Stop every server process that uses the store first."""
    source = Path(source)
    if not source.exists():
        raise BackupError(f"no backup at {source}")
    if _is_sqlite(url):
        _check_sqlite(source)
        target = sqlite_path(url)
        if target.exists() and not force:
            raise BackupError(f"{target} exists; pass --force to replace it (stop the server first)")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".restoring")
        shutil.copyfile(source, partial)
        for suffix in ("-wal", "-shm"):  # the old file's log must not be replayed onto the restored one
            target.with_name(target.name + suffix).unlink(missing_ok=True)
        os.replace(partial, target)
        return Outcome(target, target.stat().st_size, "SQLite file restored")
    target_url, env = libpq(url)
    args = ["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
            f"--dbname={target_url}"]
    if force:
        args[1:1] = ["--clean", "--if-exists"]
    _run([*args, str(source)], env)
    return Outcome(source, source.stat().st_size, "pg_restore")


def _run(args: list[str], env: dict[str, str]) -> None:
    if shutil.which(args[0]) is None:
        raise BackupError(f"{args[0]} is not installed (the PostgreSQL client tools)")
    done = subprocess.run(args, env={**os.environ, **env}, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BackupError(f"{args[0]} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
