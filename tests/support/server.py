"""A real chatsvc server in a subprocess (so a test can kill -9 it), and real websocket clients."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import websockets
from websockets.asyncio.client import ClientConnection

from chatsvc.ws.protocol import json_schemas

SCHEMAS = json_schemas()
_VALIDATORS = {name: jsonschema.Draft202012Validator(schema) for name, schema in SCHEMAS.items()}

FAST_SETTINGS = {
    "CHATSVC_OFFER_TIMEOUT": "2",
    "CHATSVC_WAIT_TIMEOUT": "30",
    "CHATSVC_SWEEP_INTERVAL": "0.2",
    "CHATSVC_AGENT_GRACE": "2",
    "CHATSVC_LOG_LEVEL": "warning",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    module: str = "chatsvc"  # what `python -m` runs, with `args`
    args: tuple[str, ...] = ("serve",)
    cwd: Path | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> Server:
        env = {**os.environ, **self.env, "CHATSVC_PORT": str(self.port), "CHATSVC_HOST": "127.0.0.1"}
        command = [sys.executable, "-m", self.module, *self.args]
        if self.log_path:
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(command, env=env, stdout=log, stderr=log, cwd=self.cwd)
        else:
            self.proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         cwd=self.cwd)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; log: {self.read_log()}")
            try:
                if httpx.get(f"{self.http}/healthz", timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not start in {timeout}s; log: {self.read_log()}")

    def read_log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path and self.log_path.exists() else ""

    def kill(self) -> None:
        """kill -9: no shutdown, no goodbye frames."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def make_agent(database_url: str, name: str, *, role: str = "agent", capacity: int = 5) -> tuple[str, str]:
    """Create an agent straight in the store; returns (agent id, token)."""
    from chatsvc.broker import create_broker
    from chatsvc.live.service import ChatService
    from chatsvc.settings import Settings
    from chatsvc.store import db

    async def run() -> tuple[str, str]:
        engine = db.create_engine(database_url)
        try:
            await db.migrate(engine)
            service = ChatService(engine, create_broker(None), Settings(database_url=database_url),
                                  secret_key="unused")
            return await service.create_agent(name, f"{name.lower()}-{uuid.uuid4().hex[:8]}@example.com",
                                              role, capacity=capacity)
        finally:
            await engine.dispose()

    return run_sync(run)


def run_sync(coro_fn: Callable[[], Any]) -> Any:
    """Run a coroutine to completion from sync code, even inside a running event loop (in a thread)."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(coro_fn())).result()


class Client:
    """A websocket client that checks every frame it receives against the protocol's JSON Schema."""

    opened: list[Client] = []  # closed by the `close_clients` fixture after each test

    def __init__(self, ws: ClientConnection, direction: str) -> None:
        Client.opened.append(self)
        self.ws = ws
        self.validator = _VALIDATORS[direction]
        self.frames: list[dict[str, Any]] = []
        self._buffer: list[dict[str, Any]] = []

    @classmethod
    async def connect(cls, url: str, direction: str, **kwargs: Any) -> Client:
        ws = await websockets.connect(url, open_timeout=10, **kwargs)
        return cls(ws, direction)

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        if self._buffer:
            return self._buffer.pop(0)
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        frame = json.loads(raw)
        self.validator.validate(frame)
        self.frames.append(frame)
        return frame

    async def expect(self, predicate: Callable[[dict[str, Any]], bool] | str, timeout: float = 10.0) -> dict[str, Any]:
        """The first frame matching `predicate` (a type name or a function); others are kept for later."""
        if isinstance(predicate, str):
            wanted = predicate
            predicate = lambda f: f["type"] == wanted  # noqa: E731
        for i, frame in enumerate(self._buffer):
            if predicate(frame):
                return self._buffer.pop(i)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(f"no matching frame; buffered: {self._buffer[-5:]}")
            raw = await asyncio.wait_for(self.ws.recv(), remaining)
            frame = json.loads(raw)
            self.validator.validate(frame)
            self.frames.append(frame)
            if predicate(frame):
                return frame
            self._buffer.append(frame)

    async def quiet(self, seconds: float = 0.3) -> list[dict[str, Any]]:
        """Everything that arrives within `seconds` (buffered frames included)."""
        out, self._buffer = self._buffer, []
        try:
            while True:
                raw = await asyncio.wait_for(self.ws.recv(), seconds)
                frame = json.loads(raw)
                self.validator.validate(frame)
                self.frames.append(frame)
                out.append(frame)
        except TimeoutError:
            return out

    async def close(self) -> None:
        await self.ws.close()

    @classmethod
    async def close_all(cls, timeout: float = 5.0) -> None:
        opened, cls.opened = cls.opened, []
        for client in opened:
            try:
                await asyncio.wait_for(client.ws.close(), timeout)
            except Exception:  # noqa: BLE001 - the server may be gone (killed on purpose)
                client.ws.transport.abort()

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == "event" and (kind is None or f["kind"] == kind)]


async def visitor(server_ws: str, *, token: str | None = None, last_seq: int = 0, site: str = "default",
                  timeout: float = 10.0, **hello: Any) -> tuple[Client, dict[str, Any]]:
    client = await Client.connect(f"{server_ws}/ws/visitor", "server_to_visitor")
    await client.send({"type": "hello", "site": site, "token": token, "last_seq": last_seq, **hello})
    welcome = await client.expect("welcome", timeout)
    await client.expect(lambda f: f["type"] == "replayed", timeout)
    return client, welcome


async def agent(server_ws: str, token: str, *, presence: str | None = "online",
                cursors: dict[str, int] | None = None) -> tuple[Client, dict[str, Any]]:
    client = await Client.connect(f"{server_ws}/ws/agent", "server_to_agent")
    frame: dict[str, Any] = {"type": "hello", "token": token, "cursors": cursors or {}}
    if presence:
        frame["presence"] = presence
    await client.send(frame)
    welcome = await client.expect("welcome")
    return client, welcome


def share_the_session_loop(conftest: str, items: list[Any]) -> None:
    """Mark the async tests of one directory to run in the session's loop (they share a server and a browser)."""
    import inspect

    import pytest

    here = Path(conftest).parent
    for item in items:
        if Path(str(item.fspath)).parent == here and inspect.iscoroutinefunction(getattr(item, "function", None)):
            item.add_marker(pytest.mark.asyncio(loop_scope="session"), append=False)
