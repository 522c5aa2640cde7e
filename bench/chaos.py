#!/usr/bin/env python
"""Fault scenarios under load, each printing what was lost (the target is 0 everywhere).

    python bench/chaos.py                      # every scenario, full size (several minutes)
    python bench/chaos.py --scenario kill9     # one of: kill9, redis, postgres, storm
    python bench/chaos.py --tiny               # every scenario on a tiny load (the test suite runs this)

kill9     several processes on PostgreSQL + Redis with visitors and agents chatting both ways; one process
          is killed with SIGKILL. Its clients reconnect to the others and resume; some of its agents never
          come back, and their chats must be offered again and taken by the others (none stuck).
redis     a private redis-server (own port and directory) is killed and restarted under load: messages
          sent meanwhile are stored, and delivered once the broker is back; how long that takes.
postgres  a private PostgreSQL cluster (initdb in a temporary directory, own port) is stopped and started
          again under load: sends fail with a retryable `unavailable` error and are retried with the same
          client id; nothing acknowledged is lost; how long until sends succeed again.
storm     --storm-clients visitors (5,000 by default) from several client processes; every socket drops at
          once (a network blip) and every client reconnects with jitter and resumes, retrying the message
          it had in flight. Resume time p50/p99/max, and the store checked for lost or doubled messages.

The disk-full and read-only cases of the SQLite default are tests (tests/chaos/test_sqlite_faults.py).
The machine's own PostgreSQL and Redis are only used for fresh databases and channel prefixes; whatever
is stopped or restarted here is a private instance, removed at the end. Exit status 1 if anything was lost,
duplicated, left unacknowledged or stuck. The last line is one JSON object with every scenario's figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402
from cluster import (  # noqa: E402
    Backends,
    Book,
    Cluster,
    Peer,
    Visitor,
    create_agents,
    open_chats,
    pct,
    say,
    settle,
)

FAULT_ENV = {"CHATSVC_AGENT_GRACE": "3", "CHATSVC_SWEEP_INTERVAL": "0.5", "CHATSVC_OFFER_TIMEOUT": "5"}


# ------------------------------------------------------------------ private Redis and PostgreSQL


class PrivateRedis:
    """A redis-server of our own on a free port with its own directory: safe to kill and restart."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = common.free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        with open(self.dir / "redis.log", "ab") as log:
            self.proc = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
                                          str(self.dir), "--save", "", "--appendonly", "no"],
                                         stdout=log, stderr=log, start_new_session=True)
        common.wait_tcp(self.port, self.proc, 20)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        common.stop_process(self.proc)


class Environment:
    """What every scenario runs against: a private PostgreSQL and a private Redis (so both may be stopped),
    and N chatsvc processes on them. Started once; a scenario that kills a process leaves it to
    `ensure_up`, which the next scenario calls."""

    def __init__(self, workdir: Path, processes: int, settings: dict[str, str] | None = None) -> None:
        self.settings = {**FAULT_ENV, **(settings or {})}
        self.redis = PrivateRedis(workdir)
        self.pg = common.PrivatePostgres(workdir, options="-c max_connections=200")
        self.processes = processes
        self.workdir = workdir
        self.backends: Backends | None = None
        self.cluster: Cluster | None = None

    def start(self) -> Environment:
        t0 = time.monotonic()
        self.redis.start()
        self.pg.init()
        self.pg.start()
        self.backends = Backends(postgres_url=self.pg.url, redis_url=self.redis.url).create()
        self.cluster = Cluster(self.processes, {**self.backends.env(), **self.settings}, self.workdir / "servers")
        self.cluster.start()
        say(f"environment: private PostgreSQL on :{self.pg.port}, private Redis on :{self.redis.port}, "
            f"{self.processes} chatsvc process(es), ready in {time.monotonic() - t0:.1f} s")
        return self

    def ensure_up(self) -> None:
        assert self.cluster is not None
        for i, proc in enumerate(self.cluster.procs):
            if proc is None or proc.poll() is not None:
                self.cluster.spawn(i)
                self.cluster.wait_ready(i)

    @property
    def database_url(self) -> str:
        assert self.backends is not None
        return self.backends.database_url

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
        self.pg.remove()
        self.redis.stop()


# ------------------------------------------------------------------ load


async def chatter(visitors: list[Visitor], interval: float, stop: asyncio.Event) -> None:
    """Every visitor sends a message every `interval` seconds (jittered) until `stop`."""

    async def loop(v: Visitor) -> None:
        await asyncio.sleep(random.uniform(0, interval))
        while not stop.is_set():
            await v.message(f"question {v.count + 1}")
            try:
                await asyncio.wait_for(stop.wait(), interval * random.uniform(0.7, 1.3))
            except TimeoutError:
                pass

    await asyncio.gather(*(loop(v) for v in visitors))


def readyz(port: int) -> int:
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def report(name: str, book: Book, extra: dict[str, Any]) -> dict[str, Any]:
    c = book.correctness()
    result = {"scenario": name, **c, **extra, "reconnects": book.reconnects, "closes": dict(book.closes),
              "errors": dict(book.errors)}
    ok = c["lost"] == 0 and c["duplicated"] == 0 and c["unacked"] == 0 and not extra.get("stuck")
    result["ok"] = ok
    say(f"[{name}] sent={c['sent']} acked={c['acked']} delivered={c['delivered']} LOST={c['lost']} "
        f"DUPLICATED={c['duplicated']} UNACKED={c['unacked']} {'OK' if ok else 'FAILED'}")
    say(f"[{name}] {json.dumps(extra)}; reconnects {book.reconnects}, closes {dict(book.closes)}, "
        f"errors {dict(book.errors)}")
    return result


async def stop_all(peers: list[Peer]) -> None:
    """Visitors end their chats first, so that no later scenario inherits them; then everyone leaves."""
    for p in peers:
        if isinstance(p, Visitor) and p.ready.is_set() and p.ws is not None:
            try:
                await p.ws.send('{"type":"end"}')
            except Exception:  # noqa: BLE001 - already gone
                pass
    await asyncio.sleep(0.5)
    await asyncio.gather(*(p.stop() for p in peers))


# ------------------------------------------------------------------ kill -9


def scenario_kill9(args: argparse.Namespace, env: Environment) -> dict[str, Any]:
    size = {"visitors": 6, "agents": 3, "warm": 1.0, "after": 4.0} if args.tiny else \
        {"visitors": 30, "agents": 6, "warm": 5.0, "after": 15.0}
    assert env.cluster is not None
    agents = create_agents(env.database_url, size["agents"])
    return asyncio.run(_kill9(env.cluster, env.database_url, agents, size))


async def _kill9(cluster: Cluster, database_url: str, agent_rows: list[tuple[str, str]],
                 size: dict[str, Any]) -> dict[str, Any]:
    import asyncpg

    book = Book()
    visitors, agents = await open_chats(cluster.urls, book, [t for _, t in agent_rows], size["visitors"],
                                        reply=True)
    peers: list[Peer] = [*visitors, *agents]
    stop = asyncio.Event()
    load = asyncio.create_task(chatter(visitors, 0.5, stop))
    try:
        await asyncio.sleep(size["warm"])
        # The process whose agents own the most chats dies; half of its agents (those with the most chats)
        # never come back.
        homes = sorted({a.home for a in agents})
        victim = max(homes, key=lambda home: sum(len(a.owned) for a in agents if a.home == home))
        victims = sorted((a for a in agents if a.home == victim), key=lambda a: -len(a.owned))
        gone = victims[:max(1, len(victims) // 2)]
        gone_ids = {agent_rows[agents.index(a)][0] for a in gone}
        orphaned = set().union(*(a.owned for a in gone)) if gone else set()
        killed_at = time.monotonic()
        cluster.kill(victim)
        for a in gone:
            a.leave()
        say(f"[kill9] killed process {victim} under load; {len(gone)} of its agent(s) gone for good, "
            f"owning {len(orphaned)} chat(s)")
        await asyncio.sleep(size["after"])
        stop.set()
        await load
        await settle(book, peers, 60)
        took_over = {c for a in agents if not a.gone for c in a.owned}
        conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
        try:
            rows = await conn.fetch("SELECT id, state, agent_id FROM conversations WHERE id = ANY($1::text[])",
                                    list(orphaned))
        finally:
            await conn.close()
        stuck = [r["id"] for r in rows if r["state"] != "with_agent" or r["agent_id"] in gone_ids]
        return report("kill9", book, {
            "processes": len(cluster.ports), "visitors": len(visitors), "agents": len(agents),
            "orphaned_chats": len(orphaned), "reoffered_and_taken": len(orphaned & took_over),
            "stuck": len(stuck), "resume_p99_ms": pct([n / 1e6 for n in book.resume_ns], 99),
            "seconds_after_kill": round(time.monotonic() - killed_at, 1)})
    finally:
        stop.set()
        await stop_all(peers)


# ------------------------------------------------------------------ Redis restart


def scenario_redis(args: argparse.Namespace, env: Environment) -> dict[str, Any]:
    size = {"visitors": 4, "agents": 2, "warm": 1.0, "outage": 1.0, "after": 1.5} if args.tiny \
        else {"visitors": 20, "agents": 4, "warm": 5.0, "outage": 5.0, "after": 10.0}
    assert env.cluster is not None
    agents = create_agents(env.database_url, size["agents"])
    return asyncio.run(_redis(env.cluster, env.redis, [t for _, t in agents], size))


async def _redis(cluster: Cluster, redis: PrivateRedis, tokens: list[str], size: dict[str, Any]) -> dict[str, Any]:
    book = Book()
    visitors, agents = await open_chats(cluster.urls, book, tokens, size["visitors"], reply=True)
    peers: list[Peer] = [*visitors, *agents]
    stop = asyncio.Event()
    load = asyncio.create_task(chatter(visitors, 0.5, stop))
    try:
        await asyncio.sleep(size["warm"])
        down_ns = time.monotonic_ns()
        redis.kill()
        await asyncio.sleep(size["outage"] / 2)
        ready_during = readyz(cluster.ports[0])
        await asyncio.sleep(size["outage"] / 2)
        redis.start()
        up_ns = time.monotonic_ns()
        say(f"[redis] Redis down for {(up_ns - down_ns) / 1e9:.1f} s under load (/readyz meanwhile: {ready_during})")
        await asyncio.sleep(size["after"])
        stop.set()
        await load
        await settle(book, peers, 60)
        during = [c for c, t in book.sent_ns.items() if down_ns <= t < up_ns]
        late = [book.delivered_ns[c] for c in during if c in book.delivered_ns]
        after = sorted((book.delivered_ns[c] - t) / 1e6 for c, t in book.sent_ns.items()
                       if t >= up_ns + 1e9 and c in book.delivered_ns)
        # Live delivery is back when a message sent after the restart arrives within a second.
        back = min((t for c, t in book.sent_ns.items() if t >= up_ns and c in book.delivered_ns
                    and book.delivered_ns[c] - t < 1e9), default=None)
        return report("redis", book, {
            "outage_s": round((up_ns - down_ns) / 1e9, 1), "sent_during_outage": len(during),
            "delivered_of_those": len(late),
            "last_of_those_delivered_s_after_restart": round((max(late) - up_ns) / 1e9, 2) if late else None,
            "live_delivery_back_s_after_restart": round((back - up_ns) / 1e9, 2) if back else None,
            "p99_ms_from_1s_after_restart": pct(after, 99), "readyz_during_outage": ready_during})
    finally:
        stop.set()
        await stop_all(peers)


# ------------------------------------------------------------------ PostgreSQL restart


def scenario_postgres(args: argparse.Namespace, env: Environment) -> dict[str, Any]:
    size = {"visitors": 4, "agents": 2, "warm": 1.0, "outage": 1.0, "after": 1.5} if args.tiny \
        else {"visitors": 20, "agents": 4, "warm": 5.0, "outage": 5.0, "after": 15.0}
    assert env.cluster is not None
    agents = create_agents(env.database_url, size["agents"])
    return asyncio.run(_postgres(env.cluster, env.pg, [t for _, t in agents], size))


async def _postgres(cluster: Cluster, pg: common.PrivatePostgres, tokens: list[str], size: dict[str, Any]) -> dict[str, Any]:
    book = Book()
    visitors, agents = await open_chats(cluster.urls, book, tokens, size["visitors"], reply=True)
    peers: list[Peer] = [*visitors, *agents]
    stop = asyncio.Event()
    load = asyncio.create_task(chatter(visitors, 0.5, stop))
    try:
        await asyncio.sleep(size["warm"])
        acked_before = set(book.acked)
        down_ns = time.monotonic_ns()
        await asyncio.to_thread(pg.stop, "fast")
        await asyncio.sleep(size["outage"] / 2)
        ready_during = await asyncio.to_thread(readyz, cluster.ports[0])
        await asyncio.sleep(size["outage"] / 2)
        await asyncio.to_thread(pg.start)
        up_ns = time.monotonic_ns()
        say(f"[postgres] PostgreSQL down for {(up_ns - down_ns) / 1e9:.1f} s under load "
            f"(/readyz meanwhile: {ready_during})")
        await asyncio.sleep(size["after"])
        stop.set()
        await load
        await settle(book, peers, 60)
        retryable = sum(n for k, n in book.errors.items() if k.endswith("(retryable)"))
        other = sum(n for k, n in book.errors.items() if not k.endswith("(retryable)") and ":" in k
                    and not k.startswith("connect"))
        first_ack_after = None
        # The store is back for writes when a message sent after the restart is acknowledged.
        for c, t in sorted(book.sent_ns.items(), key=lambda kv: kv[1]):
            if t >= up_ns and c in book.acked:
                first_ack_after = t
                break
        return report("postgres", book, {
            "outage_s": round((up_ns - down_ns) / 1e9, 1), "acked_before_outage_lost": len(acked_before - set(
                book.delivered_ns)), "retryable_errors": retryable, "other_errors": other,
            "writes_back_s_after_restart": round((first_ack_after - up_ns) / 1e9, 2) if first_ack_after else None,
            "readyz_during_outage": ready_during, "readyz_after": readyz(cluster.ports[0])})
    finally:
        stop.set()
        await stop_all(peers)


# ------------------------------------------------------------------ reconnect storm


def storm_worker(index: int, urls: list[str], count: int, concurrency: int, ready: Any, go: Any,
                 results: Any) -> None:
    common.raise_nofile()
    try:
        results.put(asyncio.run(_storm_worker(index, urls, count, concurrency, ready, go)))
    except Exception as exc:  # noqa: BLE001 - reported to the coordinator
        results.put({"worker": index, "failed": repr(exc)})
        ready.set()


async def _storm_worker(index: int, urls: list[str], count: int, concurrency: int, ready: Any,
                        go: Any) -> dict[str, Any]:
    book = Book()
    sem = asyncio.Semaphore(concurrency)

    async def open_one(i: int) -> Visitor:
        async with sem:
            v = Visitor(f"w{index}v{i}", urls, book, home=i % len(urls))
            v.reconnect_jitter = 1.0
            v.start()
            await asyncio.wait_for(v.ready.wait(), 600)
            first = await v.message("before the blip")
            await asyncio.wait_for(v.ack_waiter(first), 600)
            return v

    visitors = list(await asyncio.gather(*(open_one(i) for i in range(count))))
    ready.set()
    await asyncio.to_thread(go.wait)
    blip_ns = time.monotonic_ns()
    in_flight = []
    for v in visitors:  # a message goes out, and the network drops before its ack can come back
        in_flight.append(await v.message("sent as the network dropped"))
        assert v.ws is not None
        v.ws.transport.abort()
    book.resume_ns.clear()
    try:
        await asyncio.wait_for(asyncio.gather(*(v.ack_waiter(c) for v, c in zip(visitors, in_flight))), 600)
    except TimeoutError:
        pass
    after = [await v.message("after the resume") for v in visitors]
    try:
        await asyncio.wait_for(asyncio.gather(*(v.ack_waiter(c) for v, c in zip(visitors, after))), 300)
    except TimeoutError:
        pass
    all_back_s = (time.monotonic_ns() - blip_ns) / 1e9
    await asyncio.sleep(0.5)
    own = [f"{v.name}." for v in visitors]
    tokens = [v.conversation for v in visitors]
    await stop_all(list(visitors))
    c = book.correctness()
    return {"worker": index, "clients": count, "resume_ms": [n / 1e6 for n in book.resume_ns],
            "all_acked_s": round(all_back_s, 2), "conversations": tokens, "prefixes": own,
            "unacked": c["unacked"], "duplicated": c["duplicated"], "acked": c["acked"],
            "errors": dict(book.errors), "closes": dict(book.closes)}


def scenario_storm(args: argparse.Namespace, env: Environment) -> dict[str, Any]:
    clients = 20 if args.tiny else args.storm_clients
    workers = 1 if args.tiny else args.storm_workers
    cluster = env.cluster
    assert cluster is not None
    processes = len(cluster.ports)
    soft, _ = common.raise_nofile()
    say(f"[storm] open-file limit {soft}; {clients} clients from {workers} client process(es) on "
        f"{processes} server process(es)")
    ctx = multiprocessing.get_context("spawn")
    procs = []
    try:
        results = ctx.Queue()
        go = ctx.Event()
        readies = []
        t0 = time.monotonic()
        share = [clients // workers + (1 if i < clients % workers else 0) for i in range(workers)]
        for i in range(workers):
            ready = ctx.Event()
            readies.append(ready)
            p = ctx.Process(target=storm_worker, args=(i, cluster.urls, share[i], 25, ready, go, results))
            p.start()
            procs.append(p)
        for ready in readies:
            ready.wait(1800)
        say(f"[storm] {clients} visitors connected and each had a message acknowledged in "
            f"{time.monotonic() - t0:.0f} s; dropping every socket at once")
        go.set()
        outcomes = [results.get(timeout=1800) for _ in procs]
        failed = [o for o in outcomes if "failed" in o]
        if failed:
            raise RuntimeError(f"client process failed: {failed}")
        resume = sorted(ms for o in outcomes for ms in o["resume_ms"])
        stored = asyncio.run(_count_messages(env.database_url))
        expected = 3 * clients
        book = Book()
        book.duplicates = sum(o["duplicated"] for o in outcomes)
        extra = {"clients": clients, "server_processes": processes, "client_processes": workers,
                 "resumed": len(resume), "resume_p50_ms": pct(resume, 50), "resume_p99_ms": pct(resume, 99),
                 "resume_max_ms": round(resume[-1], 1) if resume else None,
                 "all_acked_s_after_blip": max(o["all_acked_s"] for o in outcomes),
                 "stored_visitor_messages": stored, "expected": expected,
                 "unacked": sum(o["unacked"] for o in outcomes),
                 "p99_within_5s": bool(resume) and pct(resume, 99) <= 5000}
        c_lost = max(0, expected - stored)
        ok = c_lost == 0 and stored == expected and extra["unacked"] == 0 and book.duplicates == 0 \
            and len(resume) == clients
        say(f"[storm] resumed {len(resume)}/{clients}; resume p50 {extra['resume_p50_ms']} ms, p99 "
            f"{extra['resume_p99_ms']} ms, max {extra['resume_max_ms']} ms; every message acked "
            f"{extra['all_acked_s_after_blip']} s after the blip")
        say(f"[storm] stored {stored} of {expected} visitor messages: LOST={c_lost} "
            f"DUPLICATED={max(0, stored - expected) + book.duplicates} UNACKED={extra['unacked']} "
            f"{'OK' if ok else 'FAILED'}; errors {[o['errors'] for o in outcomes]}")
        return {"scenario": "storm", **extra, "lost": c_lost, "duplicated": max(0, stored - expected) + book.duplicates,
                "ok": ok}
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()


async def _count_messages(database_url: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM events WHERE kind = 'message' AND role = 'visitor' "
                                       "AND client_id LIKE 'w%'"))  # the storm's clients are named w<n>v<n>
    finally:
        await conn.close()


# ------------------------------------------------------------------ main

# In this order: kill9 last, since it leaves one process dead (ensure_up restarts it for any scenario after).
SCENARIOS = {"redis": scenario_redis, "postgres": scenario_postgres, "storm": scenario_storm,
             "kill9": scenario_kill9}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS),
                        help="run only this scenario (repeatable); default: all")
    parser.add_argument("--tiny", action="store_true", help="a tiny load, for the test suite's smoke test")
    parser.add_argument("--storm-clients", type=int, default=5000)
    parser.add_argument("--processes", type=int, default=None, help="chatsvc processes (default 3; tiny: 2)")
    parser.add_argument("--storm-workers", type=int, default=4, help="client processes in the storm")
    parser.add_argument("--workdir", help="keep the servers' logs in this directory (default: a temporary one)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = [n for n in SCENARIOS if n in (args.scenario or SCENARIOS)]
    say(f"machine: {json.dumps(common.machine_notes())}; scenarios {names}{' (tiny)' if args.tiny else ''}")
    results = []
    with tempfile.TemporaryDirectory(prefix="chatsvc-chaos-") as tmp:
        if args.workdir:
            tmp = args.workdir
            Path(tmp).mkdir(parents=True, exist_ok=True)
        # Tiny: a shorter agent grace, so that the kill9 scenario's re-offers happen within seconds.
        env = Environment(Path(tmp), args.processes or (2 if args.tiny else 3),
                          {"CHATSVC_AGENT_GRACE": "1.5", "CHATSVC_SWEEP_INTERVAL": "0.3"} if args.tiny else None)
        try:
            try:
                env.start()
            except Exception as exc:  # noqa: BLE001 - reported like a failed scenario
                say(f"environment: ERROR: {exc!r}")
                names = []
                results.append({"scenario": "environment", "ok": False, "error": repr(exc)})
            for name in names:
                t0 = time.monotonic()
                try:
                    env.ensure_up()
                    results.append(SCENARIOS[name](args, env))
                except Exception as exc:  # noqa: BLE001 - one broken scenario must not hide the others
                    say(f"[{name}] ERROR: {exc!r}")
                    results.append({"scenario": name, "ok": False, "error": repr(exc)})
                say(f"[{name}] took {time.monotonic() - t0:.0f} s")
        finally:
            tracebacks = env.cluster.log_errors() if env.cluster else 0
            env.stop()
        say(f"tracebacks in the servers' logs: {tracebacks}")
    ok = all(r["ok"] for r in results)
    say(f"chaos: {'OK' if ok else 'FAILED'} ({', '.join(r['scenario'] + ('' if r['ok'] else ' FAILED') for r in results)})")
    say(json.dumps({"results": results}, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
