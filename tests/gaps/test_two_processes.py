"""The scheduled gap job in two real server processes sharing one PostgreSQL database (a database of its
own, dropped afterwards): both run it, the lease lets one cluster at a time, and the gap ids stay the same
whichever process computes them."""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from chatsvc.gaps import store
from chatsvc.store import db
from chatsvc.store.tables import gaps
from tests.conftest import need
from tests.console.conftest import _create_agent
from tests.gaps.support import TOPICS, seed_store
from tests.support import services
from tests.support.poll import poll
from tests.support.server import FAST_SETTINGS, Server, run_sync


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[tuple[Server, Server, str]]:
    need(services.postgres_missing())
    url = services.create_postgres_database()
    seed_store(url)  # migrates, then records the questions the bot could not answer
    # Every run is a full re-clustering, every 0.2 s in each process (TF-IDF: quick, no model to load).
    env = {**FAST_SETTINGS, "CHATSVC_DATABASE_URL": url, "CHATSVC_GAPS_EMBEDDER": "tfidf",
           "CHATSVC_GAPS_ASSIGN_INTERVAL": "0.2", "CHATSVC_GAPS_RECLUSTER_INTERVAL": "0"}
    first = Server(env, log_path=tmp_path / "a.log")
    second = Server(env, log_path=tmp_path / "b.log")
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            for started in [pool.submit(server.start, 60) for server in (first, second)]:
                started.result()
        yield first, second, url
    finally:
        first.stop()
        second.stop()
        services.drop_postgres_database(url)


def read(url: str) -> tuple[list[dict[str, Any]], list[Any]]:
    """The job's record of its last runs, and every gap row."""
    async def run() -> tuple[list[dict[str, Any]], list[Any]]:
        engine = db.create_engine(url)
        try:
            async with engine.connect() as conn:
                return await store.recent_runs(conn), list((await conn.execute(select(gaps))).all())
        finally:
            await engine.dispose()

    return run_sync(run)


def test_two_processes_run_the_job_one_at_a_time_with_the_same_gap_ids(
        two_servers: tuple[Server, Server, str]) -> None:
    first, second, url = two_servers

    def both_ran_twice(state: tuple[list[dict[str, Any]], list[Any]]) -> bool:
        runs = [r for r in state[0] if r["mode"] == "full" and not r.get("skipped")]
        return len({r["node"] for r in runs}) == 2 and all(
            sum(r["node"] == node for r in runs) >= 2 for node in {r["node"] for r in runs})

    runs, rows = poll(lambda: read(url), both_ran_twice, interval=0.2)
    assert both_ran_twice((runs, rows)), [(r["node"], r["started"]) for r in runs]
    assert len(runs) <= store.RUNS_KEPT

    # One clustering at a time: every run started after the one before it had finished.
    spans = sorted((datetime.fromisoformat(r["started"]), datetime.fromisoformat(r["finished"]), r["node"])
                   for r in runs)
    for (_, finished, before), (started, _, after) in zip(spans, spans[1:]):
        assert started >= finished, f"{after} started at {started} while {before} ran until {finished}"

    # Every run found the same topics, and no run minted a new id for one: three gap rows in all.
    assert {(r["questions"], r["gaps"]) for r in runs} == {(sum(len(q) for q in TOPICS.values()), 3)}
    ids = sorted(row.id for row in rows)
    assert len(ids) == 3 and all(row.volume > 0 and row.status == "open" for row in rows)

    # Both processes serve the same ranked gaps.
    _, token = run_sync(lambda: _create_agent(url, "Wren", "wren-two-processes@example.com", "writer", 5))
    listed = []
    for server in (first, second):
        answer = httpx.get(f"{server.http}/api/v1/gaps", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert answer.status_code == 200, answer.text
        listed.append(sorted(gap["id"] for gap in answer.json()["items"]))
    assert listed == [ids, ids]
    assert sorted(row.id for row in read(url)[1]) == ids, json.dumps(read(url)[0][-3:])
