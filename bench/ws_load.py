#!/usr/bin/env python
"""Websocket load benchmark: chatsvc's full stack against a bare `websockets` echo server, in one run.

    python bench/ws_load.py            # full run (a few minutes)
    python bench/ws_load.py --quick    # small run, under a minute

What it does, for each of the two servers (each in its own subprocess, measured from /proc):

1. idle memory      open --idle connections (for chatsvc: visitor hello answered, then idle) and divide
                    the growth of the server's RSS by their number;
2. open loop        at each fixed rate, send messages at scheduled times whatever the answers, from
                    --visitors visitor connections, and time each from its scheduled send to its
                    delivery (chatsvc: the event frame at the agent; echo: the echo);
3. burst            closed loop, one message in flight per visitor, for the maximum sustained
                    throughput;
4. handshakes       a reconnect storm (chatsvc: connect + hello with token and last_seq + welcome +
                    replayed; echo: connect + one echo), counted per second;

and server CPU µs per message from utime+stime around each phase. Every acknowledged message must
reach its agent exactly once; lost and duplicated counts are printed and make the exit status 1.

The last line of the output is one JSON object:
{"ours": {"msgs_per_s", "p50_ms", "p99_ms", "cpu_us_per_msg", "kb_per_idle_conn", "handshakes_per_s"},
 "baselines": {"echo": {...same keys...}}, "cpu_ratio": ours cpu_us_per_msg / echo cpu_us_per_msg}
p50/p99/cpu_us_per_msg are those of the reference rate (the highest open-loop rate, or --rate).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402

HERE = Path(__file__).resolve()

# Settings the bench server runs with, on top of the product defaults: one load generator stands in for
# thousands of people, so the per-connection rate limit and the agent chat capacity must not throttle it.
BENCH_SERVER_ENV = {
    "CHATSVC_AGENT_CAPACITY": "100000",
    "CHATSVC_RATE_PER_SECOND": "1000000",
    "CHATSVC_RATE_BURST": "1000000",
    "CHATSVC_LOG_LEVEL": "warning",
}

TARGETS = {
    "idle_kb": 40.0,  # KB per idle visitor connection, at 10,000 of them
    "handshakes_per_s": 2000.0,  # visitor connects + resumes per second
    "msgs_per_s": 5000.0,  # visitor→agent messages per second delivered, SQLite
    "p99_ms": 10.0,  # p99 delivery latency at 1,000 messages/s
    "cpu_ratio": 4.0,  # CPU per delivered message, ours / bare echo
}
TARGET_RATE = 1000
TARGET_IDLE = 10_000

TEXT = "Hello, my order has not arrived yet; could you check where it is, please?"
_decode = msgspec.json.decode


def frame_for(client_id: str, scheduled_ns: int) -> str:
    return f'{{"type":"message","client_id":"{client_id}","text":"{scheduled_ns} {TEXT}"}}'


def phase_of(client_id: str) -> str:
    return client_id.partition(".")[0]


# ------------------------------------------------------------------ bookkeeping


@dataclass
class Book:
    """Every message sent, acknowledged and delivered in one server's run."""

    sent: dict[str, int] = field(default_factory=dict)  # client id -> scheduled send time (ns)
    acked: set[str] = field(default_factory=set)
    duplicate_acks: int = 0
    delivered: Counter[str] = field(default_factory=Counter)
    latencies: defaultdict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    phase_acked: Counter[str] = field(default_factory=Counter)
    phase_delivered: Counter[str] = field(default_factory=Counter)
    last_delivery_ns: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    send_failures: int = 0
    unexpected_closes: int = 0
    close_reasons: Counter[str] = field(default_factory=Counter)
    waiters: dict[str, asyncio.Future[None]] = field(default_factory=dict)
    closing: bool = False

    def closed(self, ws: ClientConnection, who: str) -> None:
        """A reader ended: unexpected unless the bench is closing; remember who closed it and why."""
        if self.closing:
            return
        self.unexpected_closes += 1
        close = ws.protocol.close_rcvd or ws.protocol.close_sent
        reason = f"{close.code} {close.reason}".strip() if close is not None else "no close frame"
        self.close_reasons[f"{who}: {reason}"] += 1

    def ack(self, client_id: str, duplicate: bool) -> None:
        if duplicate:
            self.duplicate_acks += 1
        if client_id not in self.acked:
            self.acked.add(client_id)
            self.phase_acked[phase_of(client_id)] += 1
        waiter = self.waiters.pop(client_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def deliver(self, client_id: str, text: str, now_ns: int) -> None:
        self.delivered[client_id] += 1
        if self.delivered[client_id] == 1:
            phase = phase_of(client_id)
            self.phase_delivered[phase] += 1
            self.latencies[phase].append(now_ns - int(text.partition(" ")[0]))
            self.last_delivery_ns = now_ns

    def correctness(self) -> dict[str, Any]:
        delivered = set(self.delivered)
        return {
            "sent": len(self.sent),
            "acked": len(self.acked),
            "delivered": len(delivered),
            "lost": len(self.acked - delivered),
            "duplicated": common.count_duplicates(self.delivered),
            "unacked": len(set(self.sent) - self.acked),
            "delivered_unacked": len(delivered - self.acked),
            "duplicate_acks": self.duplicate_acks,
            "send_failures": self.send_failures,
            "unexpected_closes": self.unexpected_closes,
            "close_reasons": dict(self.close_reasons),
            "errors": dict(self.errors),
        }


@dataclass
class Peer:
    ws: ClientConnection
    token: str = ""
    conversation_id: str = ""
    max_seq: int = 0
    joined: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.Task[None] | None = None


# ------------------------------------------------------------------ the two targets


class Target:
    """How the load generator talks to one server; the phases are the same for both."""

    name: str
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0

    def __init__(self, compression: str | None) -> None:
        self.compression = compression

    async def connect(self, path: str) -> ClientConnection:
        return await connect(f"ws://127.0.0.1:{self.port}{path}", compression=self.compression, proxy=None,
                             ping_interval=None, open_timeout=60, close_timeout=10, max_size=2**20)

    # Implemented by each target.
    def start(self, workdir: Path) -> None: ...
    async def setup(self, book: Book, visitors: int, agents: int, concurrency: int) -> list[Peer]: ...
    async def open_idle(self) -> ClientConnection: ...
    async def handshake(self, index: int) -> ClientConnection: ...
    def describe(self) -> str: ...

    def stop(self) -> None:
        common.stop_process(self.proc)


class Ours(Target):
    name = "ours"

    def __init__(self, compression: str | None, database_url: str | None, redis_url: str | None,
                 profile: Path | None = None) -> None:
        super().__init__(compression)
        self.profile = profile
        self.database_url = database_url
        self.redis_url = redis_url
        self.agent_tokens: list[str] = []
        self.resume_pool: list[tuple[str, int]] = []
        self.agents: list[Peer] = []
        self.log_path: Path | None = None
        self.resume_failures = 0

    def describe(self) -> str:
        broker = self.redis_url or "in-process broker"
        return f"chatsvc (`python -m chatsvc serve`), store {self.database_url}, {broker}"

    def start(self, workdir: Path) -> None:
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
        self.port = common.free_port()
        env = {**os.environ, **BENCH_SERVER_ENV, "CHATSVC_DATABASE_URL": self.database_url,
               "CHATSVC_REDIS_URL": self.redis_url or "", "CHATSVC_HOST": "127.0.0.1",
               "CHATSVC_PORT": str(self.port)}
        self.log_path = workdir / "server.log"
        command = [sys.executable, "-m", "chatsvc", "serve"]
        if self.profile is not None:
            launcher = workdir / "serve_profiled.py"
            launcher.write_text(PROFILED_SERVER)
            self.profile.parent.mkdir(parents=True, exist_ok=True)
            self.profile.unlink(missing_ok=True)
            command = [sys.executable, str(launcher), str(self.profile.resolve())]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(command, env=env,
                                         stdout=log, stderr=log, start_new_session=True)
        try:
            common.wait_http_ok(f"http://127.0.0.1:{self.port}/healthz", self.proc)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; server log:\n{self.log_path.read_text(errors='replace')[-3000:]}") from None

    def create_agents(self, count: int) -> None:
        """Agents straight in the store (as `chatsvc agent add` would), before the server serves them."""
        from chatsvc.broker import create_broker
        from chatsvc.live.service import ChatService
        from chatsvc.settings import Settings
        from chatsvc.store import db

        assert self.database_url

        async def run() -> list[str]:
            engine = db.create_engine(self.database_url)
            try:
                await db.migrate(engine)
                service = ChatService(engine, create_broker(None), Settings(database_url=self.database_url),
                                      secret_key="unused")
                tokens = []
                for i in range(count):
                    _, token = await service.create_agent(
                        f"Bench Agent {i}", f"bench-{uuid.uuid4().hex[:12]}@example.com", "agent",
                        capacity=int(BENCH_SERVER_ENV["CHATSVC_AGENT_CAPACITY"]))
                    tokens.append(token)
                return tokens
            finally:
                await engine.dispose()

        self.agent_tokens = asyncio.run(run())

    async def _hello(self, token: str | None = None, last_seq: int = 0) -> tuple[ClientConnection, dict, int]:
        ws = await self.connect("/ws/visitor")
        hello: dict[str, Any] = {"type": "hello", "last_seq": last_seq}
        if token:
            hello["token"] = token
        await ws.send(json.dumps(hello))
        welcome: dict[str, Any] | None = None
        replayed_events = 0
        while True:
            frame = _decode(await asyncio.wait_for(ws.recv(), 60))
            kind = frame["type"]
            if kind == "welcome":
                welcome = frame
            elif kind == "event":
                replayed_events += 1
            elif kind == "replayed":
                assert welcome is not None
                welcome["_last_seq"] = frame["last_seq"]
                return ws, welcome, replayed_events
            elif kind == "error":
                raise RuntimeError(f"visitor hello refused: {frame}")

    async def open_idle(self) -> ClientConnection:
        ws, _, _ = await self._hello()
        return ws

    async def handshake(self, index: int) -> ClientConnection:
        """A reconnect: token and last_seq one behind, so exactly the one missed event is replayed."""
        token, last_seq = self.resume_pool[index % len(self.resume_pool)]
        ws, welcome, replayed = await self._hello(token, max(0, last_seq - 1))
        if welcome["_last_seq"] != last_seq or replayed != min(1, last_seq):
            self.resume_failures += 1
        return ws

    async def setup(self, book: Book, visitors: int, agents: int, concurrency: int) -> list[Peer]:
        assert len(self.agent_tokens) >= agents
        for token in self.agent_tokens[:agents]:
            ws = await self.connect("/ws/agent")
            await ws.send(json.dumps({"type": "hello", "token": token, "presence": "online"}))
            while _decode(await asyncio.wait_for(ws.recv(), 60))["type"] != "welcome":
                pass
            peer = Peer(ws)
            peer.reader = asyncio.create_task(self._agent_reader(peer, book))
            self.agents.append(peer)
        sem = asyncio.Semaphore(concurrency)

        async def one() -> Peer:
            async with sem:
                ws, welcome, _ = await self._hello()
                peer = Peer(ws, token=welcome["token"], conversation_id=welcome["conversation"]["id"],
                            max_seq=welcome["_last_seq"])
                peer.reader = asyncio.create_task(self._visitor_reader(peer, book))
                await ws.send('{"type":"request_agent"}')
                await asyncio.wait_for(peer.joined.wait(), 120)
                return peer

        return list(await asyncio.gather(*(one() for _ in range(visitors))))

    def remember_for_resume(self, peers: list[Peer]) -> None:
        self.resume_pool = [(p.token, p.max_seq) for p in peers]

    async def _visitor_reader(self, peer: Peer, book: Book) -> None:
        try:
            async for raw in peer.ws:
                frame = _decode(raw)
                kind = frame["type"]
                if kind == "ack":
                    book.ack(frame["client_id"], frame["duplicate"])
                elif kind == "event":
                    if frame["seq"] > peer.max_seq:
                        peer.max_seq = frame["seq"]
                    if frame["kind"] == "agent_joined":
                        peer.joined.set()
                elif kind == "error":
                    book.errors[frame["code"]] += 1
        except ConnectionClosed:
            pass
        book.closed(peer.ws, "visitor")

    async def _agent_reader(self, peer: Peer, book: Book) -> None:
        ws = peer.ws
        try:
            async for raw in ws:
                now = time.monotonic_ns()
                frame = _decode(raw)
                kind = frame["type"]
                if kind == "event":
                    if frame["kind"] == "message" and frame["role"] == "visitor":
                        book.deliver(frame["client_id"], frame["text"], now)
                elif kind == "offer":
                    conv = frame["offer"]["conversation_id"]
                    await ws.send(f'{{"type":"accept","conversation_id":"{conv}"}}')
                elif kind == "error":
                    book.errors["agent:" + frame["code"]] += 1
        except ConnectionClosed:
            pass
        book.closed(ws, "agent")

    async def close_all(self) -> None:
        await close_many([a.ws for a in self.agents])
        self.agents = []


class Echo(Target):
    name = "echo"

    def describe(self) -> str:
        return f"bare websockets {websockets.__version__} asyncio echo server (uvloop), no application code"

    def start(self, workdir: Path) -> None:
        self.port = common.free_port()
        args = [sys.executable, str(HERE), "--serve-echo", str(self.port)]
        if self.compression is None:
            args.append("--no-compression")
        log = open(workdir / "echo.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, start_new_session=True)
        common.wait_tcp(self.port, self.proc)

    async def open_idle(self) -> ClientConnection:
        return await self.connect("/")

    async def handshake(self, index: int) -> ClientConnection:
        ws = await self.connect("/")
        await ws.send('{"type":"ping"}')
        await asyncio.wait_for(ws.recv(), 60)
        return ws

    async def setup(self, book: Book, visitors: int, agents: int, concurrency: int) -> list[Peer]:
        sem = asyncio.Semaphore(concurrency)

        async def one() -> Peer:
            async with sem:
                peer = Peer(await self.connect("/"))
                peer.reader = asyncio.create_task(self._reader(peer, book))
                return peer

        return list(await asyncio.gather(*(one() for _ in range(visitors))))

    async def _reader(self, peer: Peer, book: Book) -> None:
        try:
            async for raw in peer.ws:
                now = time.monotonic_ns()
                frame = _decode(raw)
                client_id = frame["client_id"]
                book.ack(client_id, False)
                book.deliver(client_id, frame["text"], now)
        except ConnectionClosed:
            pass
        book.closed(peer.ws, "echo")

    async def close_all(self) -> None:
        pass


# ------------------------------------------------------------------ phases


async def close_many(sockets: list[ClientConnection], concurrency: int = 500) -> None:
    sem = asyncio.Semaphore(concurrency)

    async def one(ws: ClientConnection) -> None:
        async with sem:
            try:
                await asyncio.wait_for(ws.close(), 15)
            except Exception:  # noqa: BLE001 - closing is best effort
                ws.transport.abort()

    await asyncio.gather(*(one(ws) for ws in sockets))


async def open_many(opener: Callable[[int], Awaitable[ClientConnection]], count: int,
                    concurrency: int) -> tuple[list[ClientConnection], list[int], int]:
    """Open `count` connections, at most `concurrency` handshakes in flight; (sockets, ns each, failures)."""
    sem = asyncio.Semaphore(concurrency)
    sockets: list[ClientConnection] = []
    times: list[int] = []
    failures = 0

    async def one(i: int) -> None:
        nonlocal failures
        async with sem:
            t = time.monotonic_ns()
            try:
                ws = await opener(i)
            except Exception:  # noqa: BLE001 - counted and reported
                failures += 1
                return
            times.append(time.monotonic_ns() - t)
            sockets.append(ws)

    await asyncio.gather(*(one(i) for i in range(count)))
    return sockets, times, failures


async def drain(book: Book, phase: str, expected: int, stall_s: float = 10.0) -> bool:
    """Wait until every message of `phase` is acknowledged and delivered, or nothing moved for `stall_s`."""
    last = (-1, -1)
    moved = time.monotonic()
    while True:
        now = (book.phase_acked[phase], book.phase_delivered[phase])
        if now[0] >= expected and now[1] >= expected:
            return True
        if now != last:
            last, moved = now, time.monotonic()
        elif time.monotonic() - moved > stall_s:
            return False
        await asyncio.sleep(0.005)


async def open_loop(peers: list[Peer], book: Book, meter: common.ProcessMeter, rate: float,
                    duration: float, phase: str, max_backlog_s: float) -> dict[str, Any]:
    """Send at fixed times, whatever comes back; latency counts from the scheduled time.

    A server that falls more than `max_backlog_s` behind (undelivered messages / rate) does not sustain the
    rate: sending stops there, so the backlog cannot grow for minutes and wreck the phases after it. "Behind"
    is the undelivered messages divided by the rate the server has delivered at so far in this phase."""
    total = max(1, int(rate * duration))
    aborted_at: float | None = None
    interval = 1e9 / rate
    lags: list[int] = []
    n = len(peers)
    meter.start()
    t0 = time.monotonic_ns() + 20_000_000
    i = 0
    while i < total:
        now = time.monotonic_ns()
        due = 0 if now < t0 else min(total, int((now - t0) // interval) + 1)
        while i < due:
            scheduled = t0 + int(i * interval)
            client_id = f"{phase}.{i}"
            book.sent[client_id] = scheduled
            try:
                await peers[i % n].ws.send(frame_for(client_id, scheduled))
            except ConnectionClosed:
                book.send_failures += 1
            lags.append(time.monotonic_ns() - scheduled)
            i += 1
        elapsed = (time.monotonic_ns() - t0) / 1e9
        if elapsed > 1.0:
            delivered_rate = book.phase_delivered[phase] / elapsed
            if i - book.phase_delivered[phase] > max_backlog_s * max(delivered_rate, 1.0):
                aborted_at = elapsed
                break
        if i < total:
            delay = (t0 + int(i * interval) - time.monotonic_ns()) / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
    sending = (time.monotonic_ns() - t0) / 1e9
    total = i
    complete = await drain(book, phase, total)
    window = meter.stop()
    lat = common.LatencySummary.of_ns(book.latencies[phase])
    delivered = book.phase_delivered[phase]
    return {
        "phase": phase, "rate": rate, "duration": duration, "sent": total, "delivered": delivered,
        "complete": complete, "sustained": aborted_at is None, "aborted_after_s": aborted_at,
        "achieved_per_s": total / sending if sending > 0 else float("nan"),
        "p50_ms": lat.p50_ms, "p99_ms": lat.p99_ms, "max_ms": lat.max_ms,
        "cpu_us_per_msg": window.server_cpu * 1e6 / max(1, delivered),
        "server_busy": window.server_busy, "client_busy": window.client_busy,
        "loop_thread_share": loop_share(window), "other_busy": window.other_busy,
        "send_lag_p99_ms": common.LatencySummary.of_ns(lags).p99_ms, "wall_s": window.wall,
    }


async def closed_loop(peers: list[Peer], book: Book, meter: common.ProcessMeter, duration: float,
                      window_per_peer: int, phase: str) -> dict[str, Any]:
    """Each visitor keeps `window_per_peer` messages in flight for `duration` s: the sustained maximum."""
    loop = asyncio.get_running_loop()
    counter = itertools.count()
    stop_at = time.monotonic() + duration
    timeouts = 0

    async def one(peer: Peer) -> None:
        nonlocal timeouts
        while time.monotonic() < stop_at:
            client_id = f"{phase}.{next(counter)}"
            now = time.monotonic_ns()
            book.sent[client_id] = now
            waiter = loop.create_future()
            book.waiters[client_id] = waiter
            try:
                await peer.ws.send(frame_for(client_id, now))
                await asyncio.wait_for(waiter, 30)
            except ConnectionClosed:
                book.send_failures += 1
                return
            except TimeoutError:
                timeouts += 1
                book.waiters.pop(client_id, None)

    meter.start()
    start_ns = time.monotonic_ns()
    await asyncio.gather(*(one(p) for p in peers for _ in range(window_per_peer)))
    sent = sum(1 for c in book.sent if phase_of(c) == phase)
    complete = await drain(book, phase, sent)
    window = meter.stop()
    delivered = book.phase_delivered[phase]
    elapsed = (book.last_delivery_ns - start_ns) / 1e9
    lat = common.LatencySummary.of_ns(book.latencies[phase])
    return {
        "phase": phase, "in_flight": len(peers) * window_per_peer, "sent": sent, "delivered": delivered,
        "complete": complete, "timeouts": timeouts,
        "msgs_per_s": delivered / elapsed if elapsed > 0 else float("nan"),
        "p50_ms": lat.p50_ms, "p99_ms": lat.p99_ms, "max_ms": lat.max_ms,
        "cpu_us_per_msg": window.server_cpu * 1e6 / max(1, delivered),
        "server_busy": window.server_busy, "client_busy": window.client_busy, "wall_s": window.wall,
        "loop_thread_share": loop_share(window), "other_busy": window.other_busy,
    }


def loop_share(window: common.Window) -> float:
    return window.server_main_thread_cpu / window.server_cpu if window.server_cpu > 0 else float("nan")


async def settle(pid: int, limit_s: float = 600.0, quiet_share: float = 0.1, quiet_s: float = 1.0) -> float:
    """Wait until the server is quiet (under `quiet_share` of a core for `quiet_s`); seconds it took.

    Closing thousands of sockets leaves the server work to do (each session's teardown); the next phase
    must not be charged for it."""
    start = time.monotonic()
    quiet_since: float | None = None
    last = common.CpuSnapshot.take(pid)
    while time.monotonic() - start < limit_s:
        await asyncio.sleep(0.25)
        now = common.CpuSnapshot.take(pid)
        busy = now.since(last) / 0.25
        last = now
        if busy < quiet_share:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= quiet_s:
                return quiet_since - start
        else:
            quiet_since = None
    return float("inf")


async def idle_memory(target: Target, meter: common.ProcessMeter, count: int,
                      concurrency: int) -> dict[str, Any]:
    assert target.proc is not None
    pid = target.proc.pid
    # Warm up first, so lazily built state (imports, compiled queries, buffers) is not charged to idle sockets.
    warm, _, _ = await open_many(lambda i: target.open_idle(), min(50, max(1, count // 10)), concurrency)
    await close_many(warm)
    await settle(pid, quiet_s=0.5)
    rss_before = common.proc_rss_kb(pid)
    meter.start()
    sockets, times, failures = await open_many(lambda i: target.open_idle(), count, concurrency)
    window = meter.stop()
    await asyncio.sleep(min(2.0, 0.5 + count / 2000))  # let the server finish whatever each hello started
    rss_after = common.proc_rss_kb(pid)
    await close_many(sockets)
    busy_after_close = await settle(pid, quiet_s=min(1.0, 0.3 + count / 5000))
    opened = len(sockets)
    return {
        "busy_after_close_s": busy_after_close, "rss_after_close_kb": common.proc_rss_kb(pid),
        "count": opened, "failures": failures, "rss_before_kb": rss_before, "rss_after_kb": rss_after,
        "kb_per_conn": (rss_after - rss_before) / opened if opened else float("nan"),
        "open_per_s": opened / window.wall if window.wall > 0 else float("nan"),
        "cpu_us_per_open": window.server_cpu * 1e6 / max(1, opened), "other_busy": window.other_busy,
    }


async def handshake_storm(target: Target, meter: common.ProcessMeter, count: int,
                          concurrency: int) -> dict[str, Any]:
    meter.start()
    sockets, times, failures = await open_many(target.handshake, count, concurrency)
    window = meter.stop()
    await close_many(sockets)
    assert target.proc is not None
    busy_after_close = await settle(target.proc.pid, quiet_s=min(1.0, 0.3 + count / 5000))
    lat = common.LatencySummary.of_ns(times)
    return {
        "count": len(sockets), "failures": failures, "concurrency": concurrency,
        "busy_after_close_s": busy_after_close,
        "per_s": len(sockets) / window.wall if window.wall > 0 else float("nan"),
        "p50_ms": lat.p50_ms, "p99_ms": lat.p99_ms, "max_ms": lat.max_ms,
        "cpu_us_per_handshake": window.server_cpu * 1e6 / max(1, len(sockets)),
        "server_busy": window.server_busy, "client_busy": window.client_busy, "other_busy": window.other_busy,
    }


# ------------------------------------------------------------------ profiling (optional)

# The server, run under yappi's CPU clock (all threads). Profiling starts on SIGUSR1 and stops, writing its
# report, on SIGUSR2, so only the phase asked for (--profile-phase) is profiled. py-spy is not used: where it cannot tell a
# waiting thread from a running one (some virtual machines), it charges the event loop's epoll wait and the
# SQLite worker's queue wait as CPU.
PROFILED_SERVER = """
import os, runpy, signal, sys
import yappi

OUT = sys.argv[1]

def start(*_):
    yappi.set_clock_type("cpu")
    yappi.clear_stats()
    yappi.start(builtins=True, profile_threads=True)

def stop(*_):
    yappi.stop()
    yappi.get_func_stats().save(OUT + ".tmp", type="pstat")
    os.replace(OUT + ".tmp", OUT)

signal.signal(signal.SIGUSR1, start)
signal.signal(signal.SIGUSR2, stop)
sys.argv = ["chatsvc", "serve"]
runpy.run_module("chatsvc", run_name="__main__")
"""


class Profiler:
    """CPU profile of the chatsvc server while messages flow, summarised as where the CPU goes."""

    def __init__(self, out: Path | None, proc: subprocess.Popen[bytes] | None) -> None:
        self.out = out
        self.proc = proc

    def start(self) -> None:
        if self.out is not None and self.proc is not None:
            self.proc.send_signal(signal.SIGUSR1)

    def stop(self) -> str:
        if self.out is None or self.proc is None:
            return ""
        self.proc.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + 60
        while not self.out.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if not self.out.exists():
            return "the profile was not written"
        return summarise_pstats(self.out)


def summarise_pstats(path: Path, top: int = 30) -> str:
    """Self and inclusive CPU per function, and self CPU per package, from a pstats file."""
    import pstats

    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    total = sum(tt for (_, _, tt, _, _) in stats.values()) or 1.0
    by_package: Counter[str] = Counter()
    rows = []
    for (filename, line, name), (_, ncalls, tt, ct, _) in stats.items():
        by_package[_package_of(filename)] += tt
        rows.append((tt, ct, ncalls, f"{name} ({_short(filename)}:{line})"))
    out = [f"{total:.2f} s of server CPU profiled; self CPU by package:"]
    out += [f"  {t / total:6.1%}  {pkg}" for pkg, t in by_package.most_common(15)]
    out.append("self CPU by function (share, calls):")
    out += [f"  {tt / total:6.1%} {n:>9}  {fn}" for tt, ct, n, fn in sorted(rows, reverse=True)[:top]]
    out.append("inclusive CPU by function (share, calls):")
    out += [f"  {ct / total:6.1%} {n:>9}  {fn}" for tt, ct, n, fn in
            sorted(rows, key=lambda r: r[1], reverse=True)[:top]]
    return "\n".join(out)


def _short(filename: str) -> str:
    parts = Path(filename).parts
    for marker in ("site-packages", "chatsvc"):
        if marker in parts:
            i = parts.index(marker)
            return "/".join(parts[i + (1 if marker == "site-packages" else 0):])
    return "/".join(parts[-2:])


def _package_of(filename: str) -> str:
    parts = Path(filename).parts
    if "site-packages" in parts:
        i = parts.index("site-packages")
        return parts[i + 1] if i + 1 < len(parts) else "site-packages"
    if "chatsvc" in parts:
        return "chatsvc/" + "/".join(parts[parts.index("chatsvc") + 1:])
    if filename.startswith("~") or filename == "":
        return "builtins (C)"
    if len(parts) >= 2 and parts[-2].startswith("python3"):
        return "stdlib"
    return filename


# ------------------------------------------------------------------ running one server


@dataclass
class Plan:
    visitors: int
    agents: int
    rates: list[float]
    duration: float
    burst_duration: float
    burst_window: int
    burst_in_flight: int
    idle: int
    handshakes: int
    concurrency: int


def say(args: argparse.Namespace, text: str = "") -> None:
    if not args.json_only:
        print(text, flush=True)


def report_profile(args: argparse.Namespace, profiler: Profiler, result: dict[str, Any], phase: str) -> None:
    profile = profiler.stop()
    if profile:
        result["profile"] = profile
        say(args, f"profile of the server during the {phase} ({args.profile}):\n{profile}")


async def run_target(target: Target, plan: Plan, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    book = Book()
    result: dict[str, Any] = {"name": target.name, "describe": target.describe()}
    target.start(workdir)
    assert target.proc is not None
    meter = common.ProcessMeter(target.proc.pid)
    profiler = Profiler(args.profile if target.name == "ours" else None, target.proc)
    try:
        say(args, f"\n== {target.name}: {target.describe()} (pid {target.proc.pid}, port {target.port})")
        # Background CPU (sweeper, keep-alive) with nothing connected.
        meter.start()
        await asyncio.sleep(1.0 if plan.idle >= 1000 else 0.5)
        quiet = meter.stop()
        result["background_cpu_ms_per_s"] = background = quiet.server_cpu / quiet.wall * 1e3
        say(args, f"background: {background:.0f} ms of server CPU per second with nothing connected")

        if plan.idle:
            idle = await idle_memory(target, meter, plan.idle, plan.concurrency)
            result["idle"] = idle
            say(args, f"idle: {idle['count']} connections ({idle['failures']} failed): server RSS "
                      f"{idle['rss_before_kb'] / 1024:.1f} -> {idle['rss_after_kb'] / 1024:.1f} MB = "
                      f"{idle['kb_per_conn']:.1f} KB per connection; opened at {idle['open_per_s']:.0f}/s, "
                      f"{idle['cpu_us_per_open']:.0f} µs server CPU each{client_bound_note({'client_busy': 0, **idle})}; "
                      f"after closing them the server was busy for {idle['busy_after_close_s']:.1f} s "
                      f"(RSS then {idle['rss_after_close_kb'] / 1024:.1f} MB)")

        t = time.monotonic()
        peers = await target.setup(book, plan.visitors, plan.agents, plan.concurrency)
        say(args, f"setup: {len(peers)} visitors" + (f" assigned to {plan.agents} agents" if target.name == "ours"
                                                     else " connected") +
            f" in {time.monotonic() - t:.1f} s; server RSS {common.proc_rss_kb(target.proc.pid) / 1024:.1f} MB")
        gc.collect()
        gc.freeze()  # the load generator's own GC pauses would otherwise show up as server latency

        profile_messages = args.profile_phase == "messages"
        if profile_messages:
            profiler.start()
        result["rates"] = []
        for rate in plan.rates:
            r = await open_loop(peers, book, meter, rate, plan.duration, f"r{int(rate)}", args.max_backlog)
            result["rates"].append(r)
            sustained = "" if r["sustained"] else (
                f" NOT SUSTAINED: more than {args.max_backlog:g} s behind after {r['aborted_after_s']:.1f} s, "
                "sending stopped;")
            say(args, f"open loop {rate:.0f} msg/s x {plan.duration:.0f} s:{sustained} delivered "
                      f"{r['delivered']}/{r['sent']}{'' if r['complete'] else ' (INCOMPLETE)'}; latency p50 {r['p50_ms']:.2f} ms, "
                      f"p99 {r['p99_ms']:.2f} ms, max {r['max_ms']:.2f} ms; server CPU {r['cpu_us_per_msg']:.0f} "
                      f"µs/msg ({r['server_busy']:.0%} of a core, {r['loop_thread_share']:.0%} of it on the event-loop thread); load generator {r['client_busy']:.0%} of a "
                      f"core, send lag p99 {r['send_lag_p99_ms']:.2f} ms{client_bound_note(r)}")
        senders = peers[:max(1, -(-plan.burst_in_flight // plan.burst_window))]
        b = await closed_loop(senders, book, meter, plan.burst_duration, plan.burst_window, "burst")
        result["burst"] = b
        say(args, f"burst (closed loop, {b['in_flight']} in flight): {b['msgs_per_s']:.0f} msg/s delivered "
                  f"({b['delivered']}/{b['sent']}{'' if b['complete'] else ', INCOMPLETE'}); latency p50 "
                  f"{b['p50_ms']:.2f} ms, p99 {b['p99_ms']:.2f} ms; server CPU {b['cpu_us_per_msg']:.0f} µs/msg "
                  f"({b['server_busy']:.0%} of a core, {b['loop_thread_share']:.0%} of it on the event-loop thread); load generator {b['client_busy']:.0%} of a core"
                  f"{client_bound_note(b)}")
        if profile_messages:
            report_profile(args, profiler, result, "message phases")

        if isinstance(target, Ours):
            target.remember_for_resume(peers)
        if plan.handshakes:
            if not profile_messages:
                profiler.start()
            h = await handshake_storm(target, meter, plan.handshakes, plan.concurrency)
            if not profile_messages:
                report_profile(args, profiler, result, "handshake storm")
            result["handshakes"] = h
            extra = ""
            if isinstance(target, Ours):
                h["resume_mismatches"] = target.resume_failures
                extra = f"; resumes that did not replay exactly the missed event: {target.resume_failures}"
            say(args, f"handshakes: {h['count']} ({h['failures']} failed) at {h['concurrency']} in flight: "
                      f"{h['per_s']:.0f}/s, p50 {h['p50_ms']:.1f} ms, p99 {h['p99_ms']:.1f} ms; server CPU "
                      f"{h['cpu_us_per_handshake']:.0f} µs each ({h['server_busy']:.0%} of a core); load generator "
                      f"{h['client_busy']:.0%} of a core{client_bound_note(h)}{extra}; after closing them the server was busy "
                      f"for {h['busy_after_close_s']:.1f} s")

        await asyncio.sleep(0.2)
        book.closing = True
        gc.unfreeze()
        await close_many([p.ws for p in peers])
        await target.close_all()
        for p in peers:
            if p.reader is not None:
                p.reader.cancel()
        result["correctness"] = c = book.correctness()
        say(args, f"correctness[{target.name}]: sent={c['sent']} acked={c['acked']} delivered={c['delivered']} "
                  f"lost={c['lost']} duplicated={c['duplicated']} unacked={c['unacked']} "
                  f"delivered_unacked={c['delivered_unacked']} send_failures={c['send_failures']} "
                  f"unexpected_closes={c['unexpected_closes']} {c['close_reasons'] or ''} errors={c['errors']}")
        result["peak_rss_kb"] = common.proc_rss_kb(target.proc.pid)
    finally:
        target.stop()
    log_path = getattr(target, "log_path", None) or workdir / f"{target.name}.log"
    result["server_log_errors"] = errors = log_errors(log_path)
    say(args, f"server log[{target.name}]: " + ("no errors" if not errors else
                                                 "; ".join(f"{n} x {e}" for e, n in errors.items())))
    return result


def log_errors(path: Path) -> dict[str, int]:
    """Exceptions the server logged, by their last traceback line."""
    if not path.exists():
        return {}
    found: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Timeout)\b", line):
            found[line[:160]] += 1
    return dict(found.most_common(10))


def client_bound_note(r: dict[str, Any]) -> str:
    notes = []
    if r["client_busy"] > 0.85:
        notes.append("LOAD GENERATOR SATURATED: this figure is a floor for the server")
    if r.get("other_busy", 0.0) > 0.25:
        notes.append(f"CONTENDED: other processes took {r['other_busy']:.2f} cores meanwhile")
    return "".join(f"  [{n}]" for n in notes)


# ------------------------------------------------------------------ report


def headline(result: dict[str, Any], reference_phase: str) -> dict[str, Any]:
    ref = next((r for r in result["rates"] if r["phase"] == reference_phase), result["rates"][-1])
    return {
        "msgs_per_s": result["burst"]["msgs_per_s"],
        "p50_ms": ref["p50_ms"],
        "p99_ms": ref["p99_ms"],
        "cpu_us_per_msg": ref["cpu_us_per_msg"],
        "kb_per_idle_conn": result["idle"]["kb_per_conn"] if "idle" in result else float("nan"),
        "handshakes_per_s": result["handshakes"]["per_s"] if "handshakes" in result else float("nan"),
    }


def clean(value: float) -> float | None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return round(value, 3)


def report_targets(args: argparse.Namespace, plan: Plan, ours: dict[str, Any], echo: dict[str, Any],
                   ratio: float, sqlite: bool, sustained: bool) -> None:
    rate = plan.rates[-1]

    def line(label: str, value: float, target: float, unit: str, lower_is_better: bool, note: str = "") -> None:
        if not math.isfinite(value):
            verdict = "not measured"
        else:
            verdict = "met" if (value <= target if lower_is_better else value >= target) else "MISSED"
        rel = "<=" if lower_is_better else ">="
        say(args, f"  {label:<44} {value:>10.2f} {unit:<10} target {rel} {target:g} {unit:<8} {verdict}{note}")

    say(args, "\ntargets (one server process, this machine; reported, not asserted):")
    line("idle visitor connection", ours["kb_per_idle_conn"], TARGETS["idle_kb"], "KB", True,
         "" if plan.idle >= TARGET_IDLE else f"  (measured at {plan.idle}, target is at {TARGET_IDLE})")
    line("visitor connects+resumes", ours["handshakes_per_s"], TARGETS["handshakes_per_s"], "/s", False)
    line("visitor->agent messages delivered", ours["msgs_per_s"], TARGETS["msgs_per_s"], "msg/s", False,
         "" if sqlite else "  (target is for SQLite; this run used another store)")
    line(f"p99 delivery at {rate:g} msg/s", ours["p99_ms"], TARGETS["p99_ms"], "ms", True,
         ("" if rate == TARGET_RATE else f"  (target is at {TARGET_RATE} msg/s)")
         + ("" if sustained else "  (rate not sustained: sending stopped early)"))
    line("CPU per message, ours / bare echo", ratio, TARGETS["cpu_ratio"], "x", True)


def print_comparison(args: argparse.Namespace, ours: dict[str, Any], echo: dict[str, Any], ratio: float) -> None:
    say(args, "\nsummary (p50/p99/CPU at the reference rate; msgs/s from the burst):")
    say(args, f"  {'':<18}{'ours':>12}{'echo':>12}{'ours/echo':>12}")
    for key in ("msgs_per_s", "p50_ms", "p99_ms", "cpu_us_per_msg", "kb_per_idle_conn", "handshakes_per_s"):
        a, b = ours[key], echo[key]
        r = a / b if b and math.isfinite(a) and math.isfinite(b) else float("nan")
        say(args, f"  {key:<18}{a:>12.2f}{b:>12.2f}{r:>12.2f}")
    say(args, f"  cpu_ratio = {ratio:.2f}")


# ------------------------------------------------------------------ echo server (a subprocess of the bench)


def serve_echo(port: int, compression: bool) -> None:
    from websockets.asyncio.server import serve

    async def echo(ws: Any) -> None:
        try:
            async for message in ws:
                await ws.send(message)
        except ConnectionClosed:
            pass

    async def main() -> None:
        # Same listen backlog and keep-alive as the chatsvc server (uvicorn: 2048, ping every 20 s).
        async with serve(echo, "127.0.0.1", port, compression="deflate" if compression else None,
                         backlog=2048, ping_interval=20, ping_timeout=20, max_size=16384):
            await asyncio.Future()

    common.raise_nofile()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    run_loop(main())


def run_loop(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


# ------------------------------------------------------------------ main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a small run, under a minute")
    p.add_argument("--visitors", type=int, help="visitor connections sending messages (agents: a tenth)")
    p.add_argument("--rate", type=float, help="one open-loop rate in messages/s instead of the default ladder")
    p.add_argument("--duration", type=float, help="seconds of each open-loop phase and of the burst")
    p.add_argument("--idle", type=int, help="idle connections for the memory figure (0: skip)")
    p.add_argument("--handshakes", type=int, help="reconnects in the handshake storm (0: skip)")
    p.add_argument("--concurrency", type=int, default=100, help="handshakes in flight at once (default 100)")
    p.add_argument("--burst-window", type=int, default=1, help="messages in flight per visitor in the burst")
    p.add_argument("--burst-in-flight", type=int, default=200,
                   help="messages in flight in the burst (that many visitors send; default 200)")
    p.add_argument("--max-backlog", type=float, default=5.0,
                   help="stop an open-loop phase once the server is this many seconds of messages behind "
                        "(the rate is then reported as not sustained; default 5)")
    p.add_argument("--database-url", help="store for chatsvc (default: SQLite in a temporary directory)")
    p.add_argument("--redis-url", help="broker for chatsvc (default: in-process)")
    p.add_argument("--no-compression", action="store_true",
                   help="do not offer permessage-deflate (browsers do offer it, so it is on by default)")
    p.add_argument("--only", choices=["ours", "echo"], help="run one server only (no comparison, no targets)")
    p.add_argument("--profile", type=Path, help="run the chatsvc server under yappi (CPU clock, all threads; "
                                                "pip install yappi), profile the message phases into this "
                                                "pstats file and summarise it; slows the server, so do not "
                                                "quote the figures of a profiled run")
    p.add_argument("--profile-phase", choices=("messages", "handshakes"), default="messages",
                   help="the phase --profile covers: the open-loop and burst messages (default) or the "
                        "reconnect+resume storm")
    p.add_argument("--json-only", action="store_true", help="print only the final JSON line")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (database, server logs)")
    p.add_argument("--serve-echo", type=int, metavar="PORT", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    quick = args.quick
    visitors = args.visitors or (20 if quick else 1000)
    if args.rate:
        rates = [args.rate]
    else:
        rates = [50.0, 100.0] if quick else [250.0, 500.0, 1000.0]
    duration = args.duration or (2.0 if quick else 10.0)
    idle = args.idle if args.idle is not None else (100 if quick else TARGET_IDLE)
    handshakes = args.handshakes if args.handshakes is not None else (100 if quick else 5000)
    return Plan(visitors=visitors, agents=max(1, visitors // 10), rates=rates, duration=duration,
                burst_duration=duration, burst_window=args.burst_window,
                burst_in_flight=args.burst_in_flight, idle=idle, handshakes=handshakes,
                concurrency=args.concurrency)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_echo:
        serve_echo(args.serve_echo, not args.no_compression)
        return 0
    soft, hard = common.raise_nofile()
    plan = make_plan(args)
    need = max(plan.idle, plan.handshakes + plan.visitors) + plan.visitors + plan.agents + 200
    if need > soft:
        print(f"warning: open-file limit {soft} (hard {hard}) is below the ~{need} sockets this run opens",
              file=sys.stderr)
    compression = None if args.no_compression else "deflate"
    sqlite = not args.database_url or args.database_url.startswith("sqlite")
    machine = common.machine_notes()
    say(args, f"ws_load ({'quick' if args.quick else 'full'}): {plan.visitors} visitors, {plan.agents} agents, "
              f"open-loop rates {', '.join(f'{r:g}' for r in plan.rates)} msg/s x {plan.duration:g} s, burst "
              f"{plan.burst_duration:g} s with {min(plan.burst_in_flight, plan.visitors * plan.burst_window)} in flight, "
              f"{plan.idle} idle "
              f"connections, {plan.handshakes} handshakes at {plan.concurrency} in flight")
    say(args, f"machine: {machine['cpu']}, {machine['memory_gb']} GB, Linux {machine['kernel']}, Python "
              f"{sys.version.split()[0]}, websockets {websockets.__version__}; open-file limit {soft}; "
              f"permessage-deflate {'offered' if compression else 'off'}")
    say(args, "chatsvc bench settings (so the load generator is not throttled): "
              + " ".join(f"{k}={v}" for k, v in BENCH_SERVER_ENV.items()))

    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="ws_load-") as tmp:
        workdir = Path(tmp)
        if args.keep:
            workdir = Path(tempfile.mkdtemp(prefix="ws_load-kept-"))
            say(args, f"keeping database and logs in {workdir}")
        targets: list[Target] = []
        if args.only != "echo":
            ours = Ours(compression, args.database_url, args.redis_url, args.profile)
            ours.database_url = args.database_url or f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
            ours.create_agents(plan.agents)
            targets.append(ours)
        if args.only != "ours":
            targets.append(Echo(compression))
        for target in targets:
            results[target.name] = run_loop(run_target(target, plan, args, workdir))

    reference = f"r{int(plan.rates[-1])}"
    heads = {name: headline(r, reference) for name, r in results.items()}
    nan = float("nan")
    empty = dict.fromkeys(("msgs_per_s", "p50_ms", "p99_ms", "cpu_us_per_msg", "kb_per_idle_conn",
                           "handshakes_per_s"), nan)
    ours_h, echo_h = heads.get("ours", empty), heads.get("echo", empty)
    ratio = ours_h["cpu_us_per_msg"] / echo_h["cpu_us_per_msg"] if echo_h["cpu_us_per_msg"] else nan
    if "ours" in results and "echo" in results:
        print_comparison(args, ours_h, echo_h, ratio)
        ref = next((r for r in results["ours"]["rates"] if r["phase"] == reference), results["ours"]["rates"][-1])
        report_targets(args, plan, ours_h, echo_h, ratio, sqlite, ref["sustained"])

    bad = sum(r["correctness"]["lost"] + r["correctness"]["duplicated"] for r in results.values())
    say(args, f"\ncorrectness: lost={sum(r['correctness']['lost'] for r in results.values())} "
              f"duplicated={sum(r['correctness']['duplicated'] for r in results.values())} "
              f"({'OK' if not bad else 'FAILED'})")
    out = {
        "ours": {k: clean(v) for k, v in ours_h.items()},
        "baselines": {"echo": {k: clean(v) for k, v in echo_h.items()}},
        "cpu_ratio": clean(ratio),
    }
    print(json.dumps(out), flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
