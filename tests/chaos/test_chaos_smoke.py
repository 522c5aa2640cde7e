"""bench/chaos.py end to end on a tiny load: every fault scenario runs and loses nothing. The full-size
figures (and whether they meet their targets) are in docs/benchmarks/chaos.md; timings are not checked here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import need
from tests.support import services

BENCH = Path(__file__).resolve().parents[2] / "bench" / "chaos.py"


@pytest.mark.slow
def test_every_chaos_scenario_runs_tiny_and_loses_nothing(tmp_path: Path) -> None:
    need(services.postgres_missing())
    need(services.redis_missing())
    env_note = "the scenarios start their own redis-server and PostgreSQL cluster beside the machine's"
    done = subprocess.run([sys.executable, str(BENCH), "--tiny"], capture_output=True, text=True, timeout=400,
                          cwd=tmp_path)
    output = done.stdout
    tail = f"{env_note}\nstdout:\n{output[-4000:]}\nstderr:\n{done.stderr[-3000:]}"
    last = output.strip().splitlines()[-1] if output.strip() else ""
    assert last.startswith("{"), tail
    results = {r["scenario"]: r for r in json.loads(last)["results"]}
    assert set(results) == {"kill9", "redis", "postgres", "storm"}, tail
    for name, result in results.items():
        assert "error" not in result, (name, tail)
        assert result["lost"] == 0 and result["duplicated"] == 0, (name, tail)
        assert result["ok"], (name, tail)
    assert results["kill9"]["orphaned_chats"] > 0 and results["kill9"]["stuck"] == 0, tail
    assert results["kill9"]["reoffered_and_taken"] == results["kill9"]["orphaned_chats"], tail
    assert results["redis"]["delivered_of_those"] == results["redis"]["sent_during_outage"] > 0, tail
    assert results["postgres"]["readyz_during_outage"] == 503 and results["postgres"]["readyz_after"] == 200, tail
    assert results["storm"]["resumed"] == results["storm"]["clients"], tail
    assert done.returncode == 0, tail


def test_help_names_the_scenarios() -> None:
    done = subprocess.run([sys.executable, str(BENCH), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for word in ("kill9", "redis", "postgres", "storm", "--tiny", "--storm-clients"):
        assert word in done.stdout
