"""The pure domain imports no I/O or framework (house rule 1)."""

from __future__ import annotations

import ast
from pathlib import Path

import chatsvc.domain

FORBIDDEN = ("starlette", "sqlalchemy", "redis", "sklearn", "uvicorn", "websockets", "asyncio", "httpx",
             "chatsvc.store", "chatsvc.broker", "chatsvc.ws", "chatsvc.live", "socket", "os")


def test_domain_modules_import_nothing_impure() -> None:
    root = Path(chatsvc.domain.__file__).parent
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not any(name == f or name.startswith(f + ".") for f in FORBIDDEN), f"{path.name} imports {name}"
