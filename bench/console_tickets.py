"""How fast the console's ticket pages answer with a full queue, against the REST API on the same data.

Fills a fresh SQLite store with N tickets (mixed priorities, plans and statuses, created over the last
ten days, one message each), starts one real server (`python -m chatsvc serve`), logs a lead in to the
console, and times, sequentially, each page and its REST counterpart in the same run:

    the dashboard (/console/tickets, default view: unresolved, by priority)  vs  GET /api/v1/tickets?limit=50
    the dashboard sorted by SLA                                              vs  GET /api/v1/tickets?sort=sla&limit=50
    a ticket view (/console/tickets/{id})                                    vs  GET /api/v1/tickets/{id}
    the metrics page (/console/metrics)                                      vs  GET /api/v1/metrics

Both sides compute every listed ticket's SLA timers in business hours; the dashboard also computes the
queue counts. Prints one JSON object: median and p95 milliseconds of each, and the page/API ratio.

    python bench/console_tickets.py             # 2,000 tickets, 15 rounds
    python bench/console_tickets.py --quick     # 200 tickets, 5 rounds (a smoke run)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import free_port  # noqa: E402

PASSWORD = "benchmark password 123"
STATUSES = ["new"] * 15 + ["open"] * 20 + ["in_progress"] * 20 + ["pending_customer"] * 10 + ["escalated"] * 5 + \
    ["resolved"] * 15 + ["closed"] * 15
PRIORITIES = ["P1"] * 10 + ["P2"] * 25 + ["P3"] * 45 + ["P4"] * 20
PLANS = [None, None, "starter", "growth", "pro", "pmc"]


async def fill(database_url: str, count: int) -> tuple[str, str, int]:
    """The store with `count` tickets; returns (lead e-mail, lead API token, a ticket id)."""
    from sqlalchemy import insert

    from chatsvc.broker import create_broker
    from chatsvc.console.auth import set_password
    from chatsvc.live.service import ChatService
    from chatsvc.settings import Settings
    from chatsvc.store import db
    from chatsvc.store.tables import ticket_entries, tickets

    engine = db.create_engine(database_url)
    try:
        await db.migrate(engine)
        service = ChatService(engine, create_broker(None), Settings(database_url=database_url), secret_key="x")
        staff = [await service.create_agent(f"Agent {i}", f"agent{i}@example.com", "agent") for i in range(8)]
        lead_id, lead_token = await service.create_agent("Lead", "lead@example.com", "lead")
        await set_password(engine, lead_id, PASSWORD)
        rng = random.Random(7)
        now = datetime.now(UTC)
        rows = []
        for n in range(count):
            created = now - timedelta(minutes=rng.randrange(10 * 24 * 60))
            status = rng.choice(STATUSES)
            assignee = None if status == "new" else rng.choice(staff)[0]
            first = created + timedelta(minutes=rng.randrange(5, 600)) if status not in ("new", "open") else None
            done = status in ("resolved", "closed")
            rows.append({
                "subject": f"Request {n}: the dues page shows the wrong total", "status": status,
                "priority": rng.choice(PRIORITIES), "category": "billing", "channel": "form",
                "customer_name": f"Customer {n}", "customer_email": f"c{n % 700}@example.com",
                "plan": rng.choice(PLANS), "community": f"Community {n % 90}", "assignee_id": assignee,
                "escalation_level": "l2" if status == "escalated" else "l1", "sla_policy": "lotwize",
                "created_at": created, "updated_at": created + timedelta(minutes=30),
                "first_response_at": first, "resolved_at": (first or created) + timedelta(hours=3) if done else None,
                "pending_since": created + timedelta(hours=1) if status == "pending_customer" else None,
                "paused": [],
            })
        async with engine.begin() as conn:
            ids = []
            for start in range(0, len(rows), 500):
                result = await conn.execute(insert(tickets).returning(tickets.c.id), rows[start:start + 500])
                ids += [r[0] for r in result.all()]
            await conn.execute(insert(ticket_entries), [
                {"ticket_id": i, "kind": "message", "role": "visitor", "author_name": "Customer",
                 "text": "The dues page shows the wrong total since this morning.", "internal": False,
                 "created_at": now} for i in ids])
        return "lead@example.com", lead_token, ids[len(ids) // 2]
    finally:
        await engine.dispose()


def timed(client: httpx.Client, path: str, rounds: int, **kwargs: object) -> dict[str, float]:
    client.get(path, **kwargs)  # warm
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        response = client.get(path, **kwargs)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.status_code, response.text[:300])
    times.sort()
    return {"median_ms": round(times[len(times) // 2], 1),
            "p95_ms": round(times[min(len(times) - 1, int(len(times) * 0.95))], 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="200 tickets, 5 rounds")
    args = parser.parse_args()
    count, rounds = (200, 5) if args.quick else (args.tickets, args.rounds)

    with tempfile.TemporaryDirectory() as tmp:
        database_url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        email, token, ticket_id = asyncio.run(fill(database_url, count))
        port = free_port()
        env = {**os.environ, "CHATSVC_DATABASE_URL": database_url, "CHATSVC_PORT": str(port),
               "CHATSVC_HOST": "127.0.0.1", "CHATSVC_LOG_LEVEL": "warning"}
        log = open(Path(tmp) / "server.log", "wb")  # noqa: SIM115 - closed below
        server = subprocess.Popen([sys.executable, "-m", "chatsvc", "serve"], env=env, cwd=ROOT, stdout=log,
                                  stderr=log)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start: " + (Path(tmp) / "server.log").read_text()[-2000:])
                time.sleep(0.1)
            console = httpx.Client(base_url=base, timeout=120, follow_redirects=True)
            login = console.get("/console/login")
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', login.text)
            assert csrf, login.text[:300]
            answer = console.post("/console/login", data={"csrf_token": csrf.group(1), "email": email,
                                                          "password": PASSWORD, "next": "/console/tickets"})
            assert answer.status_code == 200 and "tickets-table" in answer.text, answer.text[:300]
            api = httpx.Client(base_url=base, timeout=120, headers={"Authorization": f"Bearer {token}"})
            pairs = {
                "dashboard": (("/console/tickets", console), ("/api/v1/tickets?limit=50", api)),
                "dashboard_by_sla": (("/console/tickets?sort=sla", console), ("/api/v1/tickets?sort=sla&limit=50", api)),
                "ticket_view": ((f"/console/tickets/{ticket_id}", console), (f"/api/v1/tickets/{ticket_id}", api)),
                "metrics": (("/console/metrics", console), ("/api/v1/metrics", api)),
            }
            results = {}
            for name, ((page_path, page_client), (api_path, api_client)) in pairs.items():
                page = timed(page_client, page_path, rounds)
                rest = timed(api_client, api_path, rounds)
                results[name] = {"page": page, "api": rest,
                                 "ratio": round(page["median_ms"] / max(rest["median_ms"], 0.01), 2)}
            print(json.dumps({"tickets": count, "rounds": rounds, "load_average": os.getloadavg()[0].__round__(1),
                              **results}))
        finally:
            server.terminate()
            server.wait(15)
            log.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
