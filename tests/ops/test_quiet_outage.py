"""While PostgreSQL is down, the periodic jobs (the help-center refresh, the webhook worker, the ticket
conversion retry, the live-chat sweep, the article-gap run) say so once, with a warning that carries the error's one-line summary, and say once when
they recover; no traceback for every failed round. Against a real server on a PostgreSQL of the test's own,
really stopped and started again."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench._common import PrivatePostgres, postgres_binaries
from tests.conftest import need
from tests.support.poll import poll
from tests.support.server import FAST_SETTINGS, Server

JOBS = {"help-center refresh": "chatsvc.kb", "webhook delivery": "chatsvc.webhooks",
        "ticket conversion retry": "chatsvc.tickets", "live-chat sweep": "chatsvc.live",
        "article-gap run": "chatsvc.gaps"}
ROUNDS = 3  # failed rounds each job must have been through, quietly, before PostgreSQL comes back


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    if postgres_binaries() is None or shutil.which("runuser") is None:
        need("the PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    server = PrivatePostgres(options="-c fsync=off").init()
    server.start()
    try:
        yield server
    finally:
        server.remove()


def records(log: Path) -> list[dict]:
    """The server's JSON log lines (anything else it printed is skipped)."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line being written
    return out


def about(job: str, log: list[dict]) -> list[dict]:
    return [r for r in log if r["logger"] == JOBS[job] and r["message"].startswith(job + " ")]


def test_jobs_log_an_outage_once_and_their_recovery_once(postgres: PrivatePostgres, tmp_path: Path) -> None:
    log_path = tmp_path / "server.log"
    server = Server({**FAST_SETTINGS, "CHATSVC_DATABASE_URL": postgres.url, "CHATSVC_LOG_LEVEL": "debug",
                     "CHATSVC_LOG_FORMAT": "json", "CHATSVC_TICKET_RETRY_INTERVAL": "0.3", "CHATSVC_GAPS_EMBEDDER": "tfidf",
                     "CHATSVC_GAPS_ASSIGN_INTERVAL": "0.3"}, log_path=log_path)
    server.start(timeout=40)
    try:
        assert httpx.get(f"{server.http}/readyz", timeout=30).status_code == 200
        postgres.stop()

        def quiet_rounds(log: list[dict]) -> bool:
            return all(sum(r["message"].startswith(f"{job} still failing") for r in about(job, log)) >= ROUNDS
                       for job in JOBS)

        down = poll(lambda: records(log_path), quiet_rounds, deadline=60)
        assert quiet_rounds(down), [r["message"] for r in down if r["logger"] in JOBS.values()][-20:]
        for job in JOBS:
            lines = about(job, down)
            warnings = [r for r in lines if r["level"] == "warning"]
            assert len(warnings) == 1, (job, warnings)
            # The error's one-line summary: the refused connection, not a traceback.
            assert "failing: " in warnings[0]["message"] and "\n" not in warnings[0]["message"]
            assert not any("exception" in r for r in lines), job
            assert all(r["level"] == "debug" for r in lines if r is not warnings[0]), job

        postgres.start()

        def recovered(log: list[dict]) -> bool:
            return all(any(r["message"].startswith(f"{job} recovered") for r in about(job, log)) for job in JOBS)

        up = poll(lambda: records(log_path), recovered, deadline=60)
        assert recovered(up)
        assert httpx.get(f"{server.http}/readyz", timeout=30).status_code == 200
        for job in JOBS:
            lines = about(job, up)
            assert [r["level"] for r in lines if r["level"] != "debug"] == ["warning", "info"], job
            assert not any("exception" in r for r in lines), job
    finally:
        server.stop()
