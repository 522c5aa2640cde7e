#!/usr/bin/env python
"""Scale-out benchmark: the same visitor/agent load through 1, 2 and 4 chatsvc processes on PostgreSQL + Redis.

    python bench/cluster.py                  # 1, 2 and 4 processes (a few minutes)
    python bench/cluster.py --quick          # 1 and 2 processes, small load (under a minute)

For each process count it creates a fresh PostgreSQL database (on CHATSVC_BENCH_POSTGRES_URL's server,
default postgresql+asyncpg://postgres@127.0.0.1:5432/test) and a Redis channel prefix of its own (on
CHATSVC_BENCH_REDIS_URL, default redis://127.0.0.1:6379/0), starts the processes, spreads --visitors visitors
and --agents agents over them round robin (so most messages cross processes through Redis), and runs:

1. closed loop   each visitor keeps one message in flight (send, wait for its ack, send the next) for
                 --duration seconds: delivered messages per second, and p50/p99 delivery latency (from the
                 send to the `event` frame at the agent);
2. open loop     --rate messages per second in total, sent at scheduled times whatever the answers, for
                 --duration seconds: p50/p99 delivery latency from the scheduled time.

Every acknowledged message must reach its agent exactly once: lost and duplicated counts are printed and
make the exit status 1. The scaling ratio is each run's closed-loop throughput over the one-process run's.
The last line of the output is one JSON object: {"runs": [{"processes", "msgs_per_s", "p50_ms", "p99_ms",
"open_p50_ms", "open_p99_ms", "lost", "duplicated"}...], "scaling": {"2": ratio, "4": ratio}}.

The harness here (`Cluster`, `Backends`, `Visitor`, `Agent`, `Book`) is also what bench/chaos.py uses.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_URL = os.environ.get("CHATSVC_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("CHATSVC_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

# One load generator stands in for many people on one address: per-connection and per-address limits and the
# agents' chat capacity must not throttle it. The sweep and grace periods are short so that faults resolve
# within a run.
BENCH_SERVER_ENV = {
    "CHATSVC_AGENT_CAPACITY": "100000",
    "CHATSVC_RATE_PER_SECOND": "1000000",
    "CHATSVC_RATE_BURST": "1000000",
    "CHATSVC_CONNECT_RATE": "0",
    "CHATSVC_VISITOR_MESSAGE_RATE": "0",
    "CHATSVC_IP_MESSAGE_RATE": "0",
    "CHATSVC_OFFER_TIMEOUT": "10",
    "CHATSVC_WAIT_TIMEOUT": "600",
    "CHATSVC_VISITOR_GRACE": "600",
    "CHATSVC_SWEEP_INTERVAL": "0.5",
    "CHATSVC_LOG_LEVEL": "warning",
}

_decode = msgspec.json.decode


def say(text: str = "") -> None:
    print(text, flush=True)


# ------------------------------------------------------------------ servers and their stores


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _pg(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@dataclass
class Backends:
    """A fresh database on a PostgreSQL server and a channel prefix of its own on a Redis server."""

    postgres_url: str = POSTGRES_URL
    redis_url: str = REDIS_URL
    name: str = field(default_factory=lambda: f"chatsvc_bench_{uuid.uuid4().hex[:10]}")

    @property
    def database_url(self) -> str:
        return f"{self.postgres_url.rpartition('/')[0]}/{self.name}"

    @property
    def broker_url(self) -> str:
        sep = "&" if "?" in self.redis_url else "?"
        return f"{self.redis_url}{sep}channel_prefix={self.name}:"

    def create(self) -> Backends:
        asyncio.run(_pg(self.postgres_url, f'CREATE DATABASE "{self.name}"'))
        return self

    def drop(self) -> None:
        try:
            asyncio.run(_pg(self.postgres_url, f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        except Exception as exc:  # noqa: BLE001 - the server may be the one a chaos scenario stopped
            say(f"note: could not drop database {self.name}: {exc}")

    def env(self) -> dict[str, str]:
        return {"CHATSVC_DATABASE_URL": self.database_url, "CHATSVC_REDIS_URL": self.broker_url}


def create_agents(database_url: str, count: int, capacity: int = 100000) -> list[tuple[str, str]]:
    """Agents straight in the store, as `chatsvc agent add` would; returns [(id, token)]."""
    sys.path.insert(0, str(ROOT))
    from chatsvc.broker import create_broker
    from chatsvc.live.service import ChatService
    from chatsvc.settings import Settings
    from chatsvc.store import db

    async def run() -> list[tuple[str, str]]:
        engine = db.create_engine(database_url)
        try:
            await db.migrate(engine)
            service = ChatService(engine, create_broker(None), Settings(database_url=database_url),
                                  secret_key="unused")
            return [await service.create_agent(f"Agent {i}", f"agent-{uuid.uuid4().hex[:10]}@example.com",
                                               "agent", capacity=capacity) for i in range(count)]
        finally:
            await engine.dispose()

    return asyncio.run(run())


class Cluster:
    """N `python -m chatsvc serve` processes on free ports, sharing a store and a broker."""

    def __init__(self, count: int, env: dict[str, str], workdir: Path) -> None:
        self.env = {**os.environ, **BENCH_SERVER_ENV, **env, "CHATSVC_HOST": "127.0.0.1"}
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.ports = [common.free_port() for _ in range(count)]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * count

    def ws(self, i: int) -> str:
        return f"ws://127.0.0.1:{self.ports[i]}"

    @property
    def urls(self) -> list[str]:
        return [self.ws(i) for i in range(len(self.ports))]

    def log(self, i: int) -> Path:
        return self.workdir / f"server{i}.log"

    def spawn(self, i: int) -> None:
        with open(self.log(i), "ab") as log:
            self.procs[i] = subprocess.Popen([sys.executable, "-m", "chatsvc", "serve"], cwd=ROOT,
                                             env={**self.env, "CHATSVC_PORT": str(self.ports[i])},
                                             stdout=log, stderr=log, start_new_session=True)

    def wait_ready(self, i: int, timeout: float = 120.0) -> None:
        proc = self.procs[i]
        assert proc is not None
        try:
            common.wait_http_ok(f"http://127.0.0.1:{self.ports[i]}/healthz", proc, timeout)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; log:\n{self.log(i).read_text(errors='replace')[-3000:]}") from None

    def start(self) -> Cluster:
        for i in range(len(self.ports)):  # the first one migrates; the others find the schema ready
            self.spawn(i)
        for i in range(len(self.ports)):
            self.wait_ready(i)
        return self

    def kill(self, i: int) -> None:
        proc = self.procs[i]
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)

    def terminate(self, i: int) -> None:
        proc = self.procs[i]
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        for proc in self.procs:
            common.stop_process(proc, timeout=20)

    def cpu_seconds(self) -> float:
        """CPU used so far by the live server processes."""
        total = 0.0
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                try:
                    total += common.proc_cpu_seconds(proc.pid)
                except OSError:
                    pass
        return total

    def log_errors(self) -> int:
        """Tracebacks in the servers' logs."""
        return sum(self.log(i).read_text(errors="replace").count("Traceback")
                   for i in range(len(self.ports)) if self.log(i).exists())


# ------------------------------------------------------------------ clients that reconnect and resume


@dataclass
class Book:
    """What every client sent, had acknowledged and received, across reconnects."""

    sent_ns: dict[str, int] = field(default_factory=dict)  # client id -> send (or scheduled) time
    acked: dict[str, int] = field(default_factory=dict)  # client id -> seq
    delivered_ns: dict[str, int] = field(default_factory=dict)  # client id -> first delivery time
    duplicates: int = 0  # a logical client received one conversation's seq twice
    refused: set[str] = field(default_factory=set)  # sends answered with a final (not retryable) error
    abandoned: set[str] = field(default_factory=set)  # unacknowledged when their client left for good
    errors: Counter[str] = field(default_factory=Counter)
    closes: Counter[str] = field(default_factory=Counter)
    reconnects: int = 0
    resume_ns: list[int] = field(default_factory=list)  # close -> replayed, per reconnect

    def deliver(self, client_id: str | None, now_ns: int) -> None:
        if client_id and client_id in self.sent_ns:
            self.delivered_ns.setdefault(client_id, now_ns)

    def latencies_ms(self, prefix: str = "", since_ns: int = 0) -> list[float]:
        return sorted((t - self.sent_ns[c]) / 1e6 for c, t in self.delivered_ns.items()
                      if c.startswith(prefix) and self.sent_ns[c] >= since_ns)

    def correctness(self) -> dict[str, int]:
        acked, delivered = set(self.acked), set(self.delivered_ns)
        return {"sent": len(self.sent_ns), "acked": len(acked), "delivered": len(delivered),
                "lost": len(acked - delivered), "duplicated": self.duplicates,
                "unacked": len(set(self.sent_ns) - acked - self.refused - self.abandoned),
                "refused": len(self.refused), "abandoned": len(self.abandoned)}


class Peer:
    """One logical client: reconnects (with backoff and jitter, to the next process) and resumes from its
    cursor, retrying every unacknowledged send with its original client id."""

    path = "/ws/visitor"
    ready_frame = "replayed"  # the frame after which the session is resumed

    def __init__(self, name: str, urls: list[str], book: Book, home: int = 0) -> None:
        self.name = name
        self.urls = urls
        self.book = book
        self.home = home
        self.ws: ClientConnection | None = None
        self.unacked: dict[str, dict[str, Any]] = {}  # client id -> frame
        self.seen: dict[str, set[int]] = {}  # conversation -> seqs received
        self.ready = asyncio.Event()
        self.stopping = False
        self.gone = False  # a client that leaves for good (an agent whose laptop died with the process)
        self.task: asyncio.Task[None] | None = None
        self.attempt = 0
        self.waiters: dict[str, asyncio.Future[None]] = {}
        self.reconnect_jitter = 0.3

    def ack_waiter(self, client_id: str) -> asyncio.Future[None]:
        waiter = self.waiters.get(client_id)
        if waiter is None:
            waiter = self.waiters[client_id] = asyncio.get_running_loop().create_future()
            if client_id not in self.unacked:
                waiter.set_result(None)
        return waiter

    def cursor(self, conv: str) -> int:
        seqs = self.seen.get(conv)
        return max(seqs) if seqs else 0

    def hello(self) -> dict[str, Any]:  # pragma: no cover - overridden
        raise NotImplementedError

    def on_frame(self, frame: dict[str, Any], now_ns: int) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        closed_at: int | None = None
        while not self.stopping and not self.gone:
            url = self.urls[(self.home + self.attempt) % len(self.urls)]
            try:
                self.ws = await connect(url + self.path, open_timeout=30, close_timeout=5, ping_interval=None,
                                        max_size=2**22, compression=None, proxy=None)
            except (OSError, InvalidStatus, TimeoutError, ConnectionClosed) as exc:
                self.book.errors[f"connect: {exc.__class__.__name__}"] += 1
                self.attempt += 1
                await asyncio.sleep(min(2.0, 0.05 * 2 ** min(self.attempt, 5)) * random.uniform(0.5, 1.0))
                continue
            try:
                await self.ws.send(json.dumps(self.hello()))
                async for raw in self.ws:
                    now = time.monotonic_ns()
                    frame = _decode(raw)
                    if frame["type"] == self.ready_frame and not self.ready.is_set():
                        if closed_at is not None:
                            self.book.resume_ns.append(now - closed_at)
                            closed_at = None
                        self.ready.set()
                        for resend in list(self.unacked.values()):  # retry with the same client id
                            await self.ws.send(json.dumps(resend))
                    self.on_frame(frame, now)
            except ConnectionClosed:
                pass
            if self.stopping:
                return
            close = self.ws.protocol.close_rcvd
            self.book.closes[f"{close.code}" if close else "no close frame"] += 1
            self.book.reconnects += 1
            self.ready.clear()
            closed_at = time.monotonic_ns()
            self.attempt += 1  # the next process in the list, as a load balancer would pick another
            await asyncio.sleep(random.uniform(0.0, self.reconnect_jitter))

    async def send(self, frame: dict[str, Any]) -> None:
        self.unacked[frame["client_id"]] = frame
        self.book.sent_ns.setdefault(frame["client_id"], time.monotonic_ns())
        if self.ready.is_set() and self.ws is not None:
            try:
                await self.ws.send(json.dumps(frame))
            except ConnectionClosed:
                pass  # retried after the reconnect

    def acked(self, frame: dict[str, Any]) -> None:
        if self.unacked.pop(frame["client_id"], None) is not None or frame["duplicate"]:
            self.book.acked.setdefault(frame["client_id"], frame["seq"])
        waiter = self.waiters.pop(frame["client_id"], None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def failed(self, frame: dict[str, Any], who: str) -> None:
        """An error frame: count it; a retryable one for a send is retried, same client id, after a pause."""
        self.book.errors[f"{who}: {frame['code']}{' (retryable)' if frame['retryable'] else ''}"] += 1
        resend = self.unacked.get(frame.get("ref") or "")
        if resend is None:
            return
        if frame["retryable"]:
            asyncio.get_running_loop().call_later(random.uniform(0.2, 0.6), self._retry, resend)
        else:  # refused for good (an agent replying just as the chat moved to someone else): not a loss
            self.unacked.pop(resend["client_id"], None)
            self.book.refused.add(resend["client_id"])
            waiter = self.waiters.pop(resend["client_id"], None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def _retry(self, frame: dict[str, Any]) -> None:
        if frame["client_id"] in self.unacked and self.ready.is_set() and self.ws is not None:
            asyncio.ensure_future(self.send(frame))

    def record(self, frame: dict[str, Any]) -> bool:
        """Note an event's seq; False (and a duplicate counted) if this client already had it."""
        seqs = self.seen.setdefault(frame["conversation_id"], set())
        if frame["seq"] in seqs:
            self.book.duplicates += 1
            return False
        seqs.add(frame["seq"])
        return True

    async def stop(self) -> None:
        self.stopping = True
        if self.ws is not None:
            with_timeout = asyncio.wait_for(self.ws.close(), 5)
            try:
                await with_timeout
            except Exception:  # noqa: BLE001 - already gone
                self.ws.transport.abort()
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass

    def leave(self) -> None:
        """Disappear without a goodbye and never come back (its unacknowledged sends go with it)."""
        self.gone = True
        self.book.abandoned |= set(self.unacked)
        if self.ws is not None:
            self.ws.transport.abort()


class Visitor(Peer):
    path = "/ws/visitor"

    def __init__(self, name: str, urls: list[str], book: Book, home: int = 0) -> None:
        super().__init__(name, urls, book, home)
        self.token: str | None = None
        self.conversation = ""
        self.joined = asyncio.Event()
        self.count = 0

    def hello(self) -> dict[str, Any]:
        return {"type": "hello", "token": self.token, "last_seq": self.cursor(self.conversation)}

    def on_frame(self, frame: dict[str, Any], now_ns: int) -> None:
        kind = frame["type"]
        if kind == "welcome":
            self.token = frame["token"]
            self.conversation = frame["conversation"]["id"]
        elif kind == "ack":
            self.acked(frame)
        elif kind == "event":
            if self.record(frame):
                if frame["kind"] == "message" and frame["role"] == "agent":
                    self.book.deliver(frame.get("client_id"), now_ns)
                elif frame["kind"] == "agent_joined":
                    self.joined.set()
        elif kind == "error":
            self.failed(frame, "visitor")

    async def message(self, text: str) -> str:
        self.count += 1
        client_id = f"{self.name}.{self.count}"
        await self.send({"type": "message", "client_id": client_id, "text": text, "ref": client_id})
        return client_id


class Agent(Peer):
    path = "/ws/agent"
    ready_frame = "welcome"

    def __init__(self, name: str, urls: list[str], book: Book, token: str, home: int = 0, *,
                 reply: bool = False) -> None:
        super().__init__(name, urls, book, home)
        self.token = token
        self.owned: set[str] = set()
        self.reply = reply
        self.count = 0

    def hello(self) -> dict[str, Any]:
        cursors = {conv: self.cursor(conv) for conv in self.owned}
        return {"type": "hello", "token": self.token, "cursors": cursors, "presence": "online"}

    def on_frame(self, frame: dict[str, Any], now_ns: int) -> None:
        kind = frame["type"]
        ws = self.ws
        assert ws is not None
        if kind == "welcome":
            self.owned |= {c["id"] for c in frame["conversations"]}
            for offer in frame["offers"]:
                self._accept(offer["conversation_id"])
        elif kind == "offer":
            self._accept(frame["offer"]["conversation_id"])
        elif kind == "assigned":
            # An assignment replays the conversation from seq 1 (docs/protocol.md), even to an agent who
            # had it before: a fresh transcript, not a duplicate.
            self.owned.add(frame["conversation"]["id"])
            self.seen.pop(frame["conversation"]["id"], None)
        elif kind == "unassigned":
            self.owned.discard(frame["conversation_id"])
        elif kind == "ack":
            self.acked(frame)
        elif kind == "event":
            if self.record(frame) and frame["kind"] == "message" and frame["role"] == "visitor":
                self.book.deliver(frame.get("client_id"), now_ns)
                # Replies go only to this run's visitors, never to chats left over by earlier runs.
                if self.reply and frame["conversation_id"] in self.owned and frame.get("client_id") in self.book.sent_ns:
                    self.count += 1
                    asyncio.ensure_future(self.send({
                        "type": "message", "conversation_id": frame["conversation_id"],
                        "client_id": f"{self.name}.{self.count}", "text": f"re: {frame['text'][:40]}",
                        "ref": f"{self.name}.{self.count}"}))
        elif kind == "error":
            self.failed(frame, "agent")

    def _accept(self, conv: str) -> None:
        ws = self.ws
        if ws is not None:
            asyncio.ensure_future(ws.send(json.dumps({"type": "accept", "conversation_id": conv})))


async def open_chats(urls: list[str], book: Book, tokens: list[str], visitors: int, *, reply: bool = False,
                     concurrency: int = 20, limit_s: float = 180.0) -> tuple[list[Visitor], list[Agent]]:
    """Agents spread round robin over the processes, visitors too (shifted by one, so a visitor and its agent
    are usually on different processes); every visitor asks for an agent and is accepted."""
    n = len(urls)
    agents = [Agent(f"a{i}", urls, book, token, home=i % n, reply=reply) for i, token in enumerate(tokens)]
    for a in agents:
        a.start()
    await asyncio.wait_for(asyncio.gather(*(a.ready.wait() for a in agents)), limit_s)
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> Visitor:
        async with sem:
            v = Visitor(f"v{i}", urls, book, home=(i + 1) % n)
            v.start()
            await asyncio.wait_for(v.ready.wait(), limit_s)
            await v.ws.send('{"type":"request_agent"}')  # type: ignore[union-attr]
            await asyncio.wait_for(v.joined.wait(), limit_s)
            return v

    return list(await asyncio.gather(*(one(i) for i in range(visitors)))), agents


async def settle(book: Book, peers: list[Peer], limit_s: float) -> None:
    """Wait until every send is acknowledged and delivered, or `limit_s` passes."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        c = book.correctness()
        if c["unacked"] == 0 and c["lost"] == 0 and not any(p.unacked for p in peers if not p.gone):
            return
        await asyncio.sleep(0.2)


# ------------------------------------------------------------------ the scale-out runs


async def closed_loop(visitors: list[Visitor], book: Book, duration: float) -> tuple[int, float]:
    stop_at = time.monotonic() + duration
    start_ns = time.monotonic_ns()

    async def loop(v: Visitor) -> None:
        while time.monotonic() < stop_at:
            client_id = await v.message(f"closed {time.monotonic_ns()}")
            try:
                await asyncio.wait_for(v.ack_waiter(client_id), stop_at + 30 - time.monotonic())
            except TimeoutError:
                return

    await asyncio.gather(*(loop(v) for v in visitors))
    await settle(book, list(visitors), 30)
    elapsed = (time.monotonic_ns() - start_ns) / 1e9
    delivered = sum(1 for c in book.delivered_ns if c in book.sent_ns and book.sent_ns[c] >= start_ns)
    return delivered, elapsed


async def open_loop(visitors: list[Visitor], book: Book, rate: float, duration: float) -> int:
    """Scheduled sends; latency is measured from the scheduled time, so a server that falls behind shows it."""
    start = time.monotonic_ns()
    interval = int(1e9 / rate)
    total = int(rate * duration)
    for k in range(total):
        scheduled = start + k * interval
        delay = (scheduled - time.monotonic_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
        v = visitors[k % len(visitors)]
        v.count += 1
        client_id = f"{v.name}.open{v.count}"
        book.sent_ns[client_id] = scheduled
        await v.send({"type": "message", "client_id": client_id, "text": "open loop", "ref": client_id})
    await settle(book, list(visitors), 60)
    return start


def pct(values: list[float], q: float) -> float:
    return round(common.percentile(values, q), 1) if values else float("nan")


def run_one(processes: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    backends = Backends().create()
    cluster = Cluster(processes, backends.env(), workdir / f"n{processes}")
    try:
        tokens = [t for _, t in create_agents(backends.database_url, args.agents)]
        t0 = time.monotonic()
        cluster.start()
        say(f"[{processes} process(es)] started in {time.monotonic() - t0:.1f} s; "
            f"opening {args.visitors} chats with {args.agents} agents")
        result = asyncio.run(drive(processes, cluster, tokens, args))
        result["log_tracebacks"] = cluster.log_errors()
        return result
    finally:
        cluster.stop()
        backends.drop()


async def drive(processes: int, cluster: Cluster, tokens: list[str], args: argparse.Namespace) -> dict[str, Any]:
    book = Book()
    peers: list[Peer] = []
    try:
        visitors, agents = await open_chats(cluster.urls, book, tokens, args.visitors)
        peers = [*visitors, *agents]
        before = common.machine_busy_seconds()
        servers_before = cluster.cpu_seconds()
        me_before = common.self_cpu_seconds()
        delivered, elapsed = await closed_loop(visitors, book, args.duration)
        closed_ms = book.latencies_ms("v")
        contended = (common.machine_busy_seconds() - before) / elapsed
        server_cpu = cluster.cpu_seconds() - servers_before
        load_cpu = common.self_cpu_seconds() - me_before
        say(f"[{processes}] closed loop: {delivered} delivered in {elapsed:.1f} s = {delivered / elapsed:.0f} msg/s; "
            f"p50 {pct(closed_ms, 50)} ms, p99 {pct(closed_ms, 99)} ms; CPU: chatsvc processes "
            f"{server_cpu / elapsed:.2f} cores ({1e6 * server_cpu / max(delivered, 1):.0f} µs/msg), load generator "
            f"{load_cpu / elapsed:.2f}, whole machine {contended:.2f} of {os.cpu_count()}")
        open_start = await open_loop(visitors, book, args.rate, args.duration)
        open_ms = book.latencies_ms("v", since_ns=open_start)
        say(f"[{processes}] open loop at {args.rate:g} msg/s: p50 {pct(open_ms, 50)} ms, p99 {pct(open_ms, 99)} ms "
            f"({len(open_ms)} delivered)")
        c = book.correctness()
        say(f"[{processes}] correctness: sent={c['sent']} acked={c['acked']} delivered={c['delivered']} "
            f"lost={c['lost']} duplicated={c['duplicated']} unacked={c['unacked']}; "
            f"unexpected closes {dict(book.closes)}; errors {dict(book.errors)}")
        return {"processes": processes, "msgs_per_s": round(delivered / elapsed, 1),
                "p50_ms": pct(closed_ms, 50), "p99_ms": pct(closed_ms, 99),
                "open_p50_ms": pct(open_ms, 50), "open_p99_ms": pct(open_ms, 99),
                "lost": c["lost"], "duplicated": c["duplicated"], "unacked": c["unacked"],
                "machine_cores_busy": round(contended, 2), "server_cores": round(server_cpu / elapsed, 2),
                "server_cpu_us_per_msg": round(1e6 * server_cpu / max(delivered, 1)),
                "load_generator_cores": round(load_cpu / elapsed, 2)}
    finally:
        for p in peers:
            await p.stop()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", default=None, help="comma-separated process counts (default 1,2,4)")
    parser.add_argument("--visitors", type=int, default=None, help="visitors, one chat each (default 40)")
    parser.add_argument("--agents", type=int, default=None, help="agents (default 8)")
    parser.add_argument("--duration", type=float, default=None, help="seconds per phase (default 15)")
    parser.add_argument("--rate", type=float, default=None, help="open-loop messages per second (default 40)")
    parser.add_argument("--quick", action="store_true", help="1 and 2 processes, 10 visitors, 5 s phases")
    args = parser.parse_args(argv)
    quick = {"processes": "1,2", "visitors": 10, "agents": 4, "duration": 5.0, "rate": 20.0}
    full = {"processes": "1,2,4", "visitors": 40, "agents": 8, "duration": 15.0, "rate": 40.0}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.counts = [int(x) for x in str(args.processes).split(",")]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    common.raise_nofile()
    say(f"machine: {json.dumps(common.machine_notes())}")
    say(f"store {POSTGRES_URL.rpartition('/')[0]}/<fresh database>, broker {REDIS_URL} with a fresh channel prefix")
    runs = []
    with tempfile.TemporaryDirectory(prefix="chatsvc-cluster-") as tmp:
        for n in args.counts:
            runs.append(run_one(n, args, Path(tmp)))
    base = runs[0]["msgs_per_s"] or float("nan")
    scaling = {str(r["processes"]): round(r["msgs_per_s"] / base, 2) for r in runs[1:]}
    say()
    say("| processes | msgs/s (closed loop) | p50 / p99 ms (closed) | p50 / p99 ms at "
        f"{args.rate:g} msg/s | scaling | lost | duplicated |")
    say("|---:|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        ratio = "1.00" if r is runs[0] else f"{scaling[str(r['processes'])]:.2f}"
        say(f"| {r['processes']} | {r['msgs_per_s']:.0f} | {r['p50_ms']} / {r['p99_ms']} | "
            f"{r['open_p50_ms']} / {r['open_p99_ms']} | {ratio} | {r['lost']} | {r['duplicated']} |")
    ok = all(r["lost"] == 0 and r["duplicated"] == 0 and r["unacked"] == 0 for r in runs)
    say(f"correctness: {'OK' if ok else 'FAILED'}")
    say(json.dumps({"runs": runs, "scaling": scaling}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
