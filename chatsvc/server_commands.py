"""`chatsvc serve`, `chatsvc migrate` and `chatsvc agent add`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from chatsvc.settings import FIELDS, Settings

DEMO_AGENT_EMAIL = "demo-agent@example.com"
DEMO_AGENT_TOKEN = "demo-agent-token"
DEMO_PASSWORD = "chatsvc-demo"
# One console log-in per role, all with DEMO_PASSWORD: `serve --demo` creates them and prints them.
DEMO_LOGINS = (("Avery Agent", "agent@example.com", "agent"), ("Lee Lead", "lead@example.com", "lead"),
               ("Morgan Manager", "manager@example.com", "manager"), ("Wren Writer", "writer@example.com", "writer"),
               ("Ada Admin", "admin@example.com", "admin"))


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser("serve", help="run the service (migrates the store first)")
    for field in FIELDS:
        flag = "--" + field.name.replace("_", "-")
        if isinstance(field.default, bool):
            serve.add_argument(flag, dest=field.name, action="store_const", const=True, default=None,
                               help=f"{field.help} [{field.env}]")
        else:
            serve.add_argument(flag, dest=field.name, type=type(field.default), default=None,
                               help=f"{field.help} [{field.env}]")
    serve.add_argument("--demo", action="store_true",
                       help=f"also create the demo agent (token {DEMO_AGENT_TOKEN!r}) if it is missing")
    serve.set_defaults(func=cmd_serve)

    migrate = commands.add_parser("migrate", help="apply the store's schema migrations and exit")
    migrate.add_argument("--database-url", dest="database_url", default=None)
    migrate.set_defaults(func=cmd_migrate)

    kb = commands.add_parser("kb", help="import and export the help center")
    kb_commands = kb.add_subparsers(dest="kb_command", required=True)
    kb_import = kb_commands.add_parser("import", help="add or update articles from a folder of Markdown files "
                                       "with front matter, or a .jsonl file; reports what changed")
    kb_import.add_argument("path")
    kb_import.add_argument("--database-url", dest="database_url", default=None)
    kb_import.set_defaults(func=cmd_kb_import)
    kb_export = kb_commands.add_parser("export", help="write every article to a folder of Markdown files, "
                                       "or to PATH.jsonl")
    kb_export.add_argument("path")
    kb_export.add_argument("--database-url", dest="database_url", default=None)
    kb_export.set_defaults(func=cmd_kb_export)

    agent = commands.add_parser("agent", help="manage agents")
    agent_commands = agent.add_subparsers(dest="agent_command", required=True)
    add = agent_commands.add_parser("add", help="create an agent and print its API token (shown once)")
    add.add_argument("--name", required=True)
    add.add_argument("--email", required=True)
    add.add_argument("--role", default="agent", choices=["agent", "lead", "manager", "writer", "admin"])
    add.add_argument("--capacity", type=int, default=None)
    add.add_argument("--token", default=None, help="use this token instead of a random one")
    add.add_argument("--password-stdin", action="store_true",
                     help="read a console password from the first line of standard input")
    add.add_argument("--database-url", dest="database_url", default=None)
    add.set_defaults(func=cmd_agent_add)
    passwd = agent_commands.add_parser("passwd", help="set an agent's console password (ends their log-ins)")
    passwd.add_argument("--email", required=True)
    passwd.add_argument("--password-stdin", action="store_true",
                        help="read the password from the first line of standard input instead of prompting")
    passwd.add_argument("--database-url", dest="database_url", default=None)
    passwd.set_defaults(func=cmd_agent_passwd)

    backup = commands.add_parser("backup", help="copy the store to PATH while the server runs (SQLite online "
                                 "backup, or pg_dump for PostgreSQL)")
    backup.add_argument("path")
    backup.add_argument("--database-url", dest="database_url", default=None)
    backup.set_defaults(func=cmd_backup)
    restore = commands.add_parser("restore", help="put a backup made by `chatsvc backup` in place (stop the "
                                  "server first)")
    restore.add_argument("path")
    restore.add_argument("--database-url", dest="database_url", default=None)
    restore.add_argument("--force", action="store_true", help="replace an existing store")
    restore.set_defaults(func=cmd_restore)


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {f.name: getattr(args, f.name, None) for f in FIELDS}
    return Settings.from_env(**overrides)


def cmd_migrate(args: argparse.Namespace) -> int:
    from chatsvc.store import db

    settings = _settings(args)

    async def run() -> str | None:
        engine = db.create_engine(settings.database_url)
        try:
            await db.migrate(engine)
            return await db.current_revision(engine)
        finally:
            await engine.dispose()

    print(f"store at revision {asyncio.run(run())}")
    return 0


async def _ensure_agent(settings: Settings, name: str, email: str, role: str, capacity: int | None,
                        token: str | None, password: str | None = None) -> tuple[str, str, bool]:
    from sqlalchemy import select

    from chatsvc.broker import create_broker
    from chatsvc.live.service import ChatService
    from chatsvc.store import db
    from chatsvc.store.tables import agents

    engine = db.create_engine(settings.database_url)
    try:
        await db.migrate(engine)
        async with engine.connect() as conn:
            existing = (await conn.execute(select(agents.c.id).where(agents.c.email == email))).first()
        if existing is not None:
            return existing.id, "", False
        service = ChatService(engine, create_broker(None), settings, secret_key="unused")
        agent_id, issued = await service.create_agent(name, email, role, capacity=capacity, token=token)
        if password is not None:
            from chatsvc.console.auth import set_password

            await set_password(engine, agent_id, password)
        return agent_id, issued, True
    finally:
        await engine.dispose()


DEMO_HELPCENTER = Path(__file__).with_name("demo") / "helpcenter"


async def import_articles(settings: Settings, path: Path, *, only_if_empty: bool = False) -> tuple[Any, list[Any]]:
    from datetime import UTC, datetime

    from chatsvc.kb_suggest import load_articles
    from chatsvc.kb_suggest.store import ArticleStore
    from chatsvc.store import db

    items, problems = load_articles(path)
    engine = db.create_engine(settings.database_url)
    try:
        await db.migrate(engine)
        store = ArticleStore(engine)
        if only_if_empty and await store.count():
            return None, problems
        return await store.save_many(items, datetime.now(UTC)), problems
    finally:
        await engine.dispose()


def cmd_kb_import(args: argparse.Namespace) -> int:
    from chatsvc.cli import CommandError

    path = Path(args.path)
    if not path.exists():
        raise CommandError(f"{path} does not exist")
    diff, problems = asyncio.run(import_articles(_settings(args), path))
    for problem in problems:
        print(f"skipped: {problem}", file=sys.stderr)
    for label, ids in (("added", diff.added), ("updated", diff.updated)):
        for article_id in ids:
            print(f"{label}: {article_id}")
    print(f"{diff.summary()}; {len(problems)} problem(s)")
    return 1 if problems else 0


def cmd_kb_export(args: argparse.Namespace) -> int:
    from chatsvc.kb_suggest import dump_articles
    from chatsvc.kb_suggest.store import ArticleStore
    from chatsvc.store import db

    settings = _settings(args)

    async def run() -> list[Any]:
        engine = db.create_engine(settings.database_url)
        try:
            await db.migrate(engine)
            store = ArticleStore(engine)
            return [s.article for s in await store.list(limit=10**9)]
        finally:
            await engine.dispose()

    items = asyncio.run(run())
    dump_articles(items, args.path)
    print(f"exported {len(items)} article(s) to {args.path}")
    return 0


def _read_password(args: argparse.Namespace, email: str) -> str:
    """From stdin's first line (--password-stdin), else prompted twice; refused when too weak."""
    import getpass

    from chatsvc.cli import CommandError
    from chatsvc.console.auth import password_problem

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("New password: ")
        if getpass.getpass("Again: ") != password:
            raise CommandError("the two passwords differ")
    problem = password_problem(password, email=email)
    if problem:
        raise CommandError(problem)
    return password


def cmd_agent_add(args: argparse.Namespace) -> int:
    from chatsvc.cli import CommandError

    settings = _settings(args)
    password = _read_password(args, args.email) if args.password_stdin else None
    agent_id, token, created = asyncio.run(
        _ensure_agent(settings, args.name, args.email, args.role, args.capacity, args.token, password))
    if not created:
        raise CommandError(f"an agent with e-mail {args.email} already exists (id {agent_id})")
    print(f"agent {agent_id} created; API token (shown once): {token}")
    return 0


def cmd_agent_passwd(args: argparse.Namespace) -> int:
    from chatsvc.cli import CommandError

    settings = _settings(args)
    password = _read_password(args, args.email)

    async def run() -> str | None:
        from sqlalchemy import func, select

        from chatsvc.console.auth import set_password
        from chatsvc.store import db
        from chatsvc.store.tables import agents

        engine = db.create_engine(settings.database_url)
        try:
            await db.migrate(engine)
            async with engine.connect() as conn:
                agent_id = (await conn.execute(select(agents.c.id).where(
                    func.lower(agents.c.email) == args.email.strip().lower()))).scalar_one_or_none()
            if agent_id is not None:
                await set_password(engine, agent_id, password)
            return agent_id
        finally:
            await engine.dispose()

    agent_id = asyncio.run(run())
    if agent_id is None:
        raise CommandError(f"no agent with e-mail {args.email}")
    print(f"password of agent {agent_id} set; their console log-ins have been ended")
    return 0


async def _ensure_demo_logins(settings: Settings) -> None:
    for name, email, role in DEMO_LOGINS:
        await _ensure_agent(settings, name, email, role, None, None, DEMO_PASSWORD)


def cmd_backup(args: argparse.Namespace) -> int:
    from chatsvc.cli import CommandError
    from chatsvc.ops.backup import BackupError, backup

    try:
        outcome = backup(_settings(args).database_url, Path(args.path))
    except BackupError as exc:
        raise CommandError(str(exc)) from None
    print(f"backup written to {outcome.path} ({outcome.size} bytes, {outcome.what})")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from chatsvc.cli import CommandError
    from chatsvc.ops.backup import BackupError, restore

    settings = _settings(args)
    try:
        outcome = restore(Path(args.path), settings.database_url, force=args.force)
    except BackupError as exc:
        raise CommandError(str(exc)) from None
    print(f"restored {args.path} into {_without_password(settings.database_url)} ({outcome.what})")
    return 0


def _without_password(url: str) -> str:
    """Secrets never reach logs or terminals: show URLs with the password masked."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def cmd_serve(args: argparse.Namespace) -> int:
    from chatsvc.app import create_app, serve
    from chatsvc.ops import logs

    settings = _settings(args)
    try:
        logs.configure(settings.log_level, settings.log_format)
    except ValueError as exc:
        from chatsvc.cli import CommandError

        raise CommandError(str(exc)) from None
    if args.demo:
        asyncio.run(_ensure_agent(settings, "Demo Agent", DEMO_AGENT_EMAIL, "admin", None, DEMO_AGENT_TOKEN))
        asyncio.run(_ensure_demo_logins(settings))
        diff, _ = asyncio.run(import_articles(settings, DEMO_HELPCENTER, only_if_empty=True))
        if diff is not None:
            print(f"demo help center loaded: {diff.summary()}")
    base = settings.base_url
    print(
        f"chatsvc listening on {base}\n"
        f"  status page      {base}/\n"
        f"  demo site        {base}/demo   (the chat widget on a sample page)\n"
        f"  help center      {base}/help\n"
        f"  agent console    {base}/console/"
        + (f"   (demo log-ins, password {DEMO_PASSWORD!r}: "
           + ", ".join(email for _, email, _ in DEMO_LOGINS) + ")" if args.demo else "") + "\n"
        f"  visitor socket   {base.replace('http', 'ws', 1)}/ws/visitor\n"
        f"  agent socket     {base.replace('http', 'ws', 1)}/ws/agent"
        + (f"  (demo agent token: {DEMO_AGENT_TOKEN})" if args.demo else "")
        + f"\n  store            {_without_password(settings.database_url)}\n"
        f"  broker           {_without_password(settings.redis_url) if settings.redis_url else 'in-process'}",
        flush=True,
    )
    if settings.redis_url == "" and not settings.database_url.startswith("sqlite"):
        print("note: without CHATSVC_REDIS_URL only one server process may share this database", file=sys.stderr)
    serve(  # uvicorn.run, plus the drain on SIGTERM (chatsvc.app.drain)
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,  # chatsvc.ops.logs configured the root logger; uvicorn's loggers propagate to it
        access_log=False,  # chatsvc.access logs each request, with its request id
        ws_max_size=settings.max_frame_bytes,
        # Chat frames are small JSON; per-connection deflate state costs ~49 KB of memory per socket
        # (docs/benchmarks/ws_load.md) for little bandwidth saved.
        ws_per_message_deflate=False,
        ws_ping_interval=settings.ping_interval,
        ws_ping_timeout=settings.ping_interval,
        timeout_graceful_shutdown=5,
        lifespan="on",
    )
    return 0
