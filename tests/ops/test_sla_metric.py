"""`chatsvc_sla_breaches_total` through a real GET /metrics: a P1 ticket left unanswered past its 15 minutes
is counted once as a first-response breach, and once more as a resolution breach past its 4 hours, on a
real server whose clock the test moves (tests/console_tickets/clocked_server.py)."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import httpx

from tests.ops.test_metrics_and_health import scrape, value
from tests.support.poll import poll
from tests.support.server import FAST_SETTINGS, Server, make_agent

ROOT = Path(__file__).parents[2]
BREACHES = "chatsvc_sla_breaches_total"


def move_clock(clock_file: Path, offset: timedelta) -> None:
    """The server reads its time as the real time plus this offset (replaced atomically)."""
    temporary = clock_file.with_suffix(".tmp")
    temporary.write_text(json.dumps({"offset_seconds": offset.total_seconds()}), encoding="utf-8")
    os.replace(temporary, clock_file)


def test_sla_breaches_are_counted_once_per_timer(tmp_path: Path) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'sla.db'}"
    clock_file = tmp_path / "clock.json"
    move_clock(clock_file, timedelta(0))
    _, token = make_agent(database_url, "Ann")
    server = Server({**FAST_SETTINGS, "CHATSVC_DATABASE_URL": database_url,
                     "CHATSVC_TEST_CLOCK_FILE": str(clock_file)},
                    module="tests.console_tickets.clocked_server", args=(), cwd=ROOT, log_path=tmp_path / "server.log")
    server.start(timeout=40)
    try:
        before = scrape(server.http)
        assert value(before, BREACHES, timer="first_response") == 0
        assert value(before, BREACHES, timer="resolution") == 0
        created = httpx.post(f"{server.http}/api/v1/tickets", headers={"Authorization": f"Bearer {token}"},
                             json={"subject": "Portal down", "text": "nobody can log in", "priority": "P1"},
                             timeout=30)
        assert created.status_code == 201, created.text
        ticket = created.json()["id"]

        move_clock(clock_file, timedelta(minutes=16))  # P1: the first response was due after 15 minutes
        samples = poll(lambda: scrape(server.http), lambda s: value(s, BREACHES, timer="first_response") >= 1)
        assert value(samples, BREACHES, timer="first_response") == 1
        assert value(samples, BREACHES, timer="resolution") == 0
        shown = httpx.get(f"{server.http}/api/v1/tickets/{ticket}", headers={"Authorization": f"Bearer {token}"},
                          timeout=30).json()
        assert shown["sla"]["first_response"]["state"] == "breached"

        move_clock(clock_file, timedelta(hours=5))  # and the resolution after 4 hours
        samples = poll(lambda: scrape(server.http), lambda s: value(s, BREACHES, timer="resolution") >= 1)
        assert value(samples, BREACHES, timer="resolution") == 1
        assert value(samples, BREACHES, timer="first_response") == 1  # recorded once, not at every sweep
    finally:
        server.stop()
