"""bench/ws_load.py end to end on a tiny configuration: it runs, its last line is the JSON contract, and every
acknowledged message reached its agent exactly once. Timings are not checked: they depend on the machine."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "ws_load.py"
KEYS = {"msgs_per_s", "p50_ms", "p99_ms", "cpu_us_per_msg", "kb_per_idle_conn", "handshakes_per_s"}


@pytest.mark.slow
def test_ws_load_tiny_run_prints_the_contract_and_loses_nothing(tmp_path: Path) -> None:
    command = [sys.executable, str(BENCH), "--visitors", "3", "--rate", "20", "--duration", "1",
               "--idle", "10", "--handshakes", "10", "--concurrency", "5"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    output = done.stdout
    assert done.returncode == 0, f"exit {done.returncode}\nstdout:\n{output[-3000:]}\nstderr:\n{done.stderr[-3000:]}"

    result = json.loads(output.strip().splitlines()[-1])
    assert set(result) == {"ours", "baselines", "cpu_ratio"}
    assert set(result["baselines"]) == {"echo"}
    for figures in (result["ours"], result["baselines"]["echo"]):
        assert set(figures) == KEYS
        for key, value in figures.items():
            assert isinstance(value, (int, float)) and math.isfinite(value) and value >= 0, (key, value)
    assert isinstance(result["cpu_ratio"], (int, float)) and result["cpu_ratio"] > 0

    # Both servers' correctness lines, and the overall one: nothing lost, nothing delivered twice.
    counts = re.findall(r"^correctness\[(\w+)\]: .*?\blost=(\d+) duplicated=(\d+)", output, re.M)
    assert {name for name, _, _ in counts} == {"ours", "echo"}, output[-3000:]
    assert all(lost == "0" and duplicated == "0" for _, lost, duplicated in counts), counts
    sent = dict(re.findall(r"^correctness\[(\w+)\]: sent=(\d+)", output, re.M))
    assert int(sent["ours"]) > 0 and int(sent["echo"]) > 0
    assert re.search(r"^correctness: lost=0 duplicated=0 \(OK\)$", output, re.M)


def test_help_lists_the_documented_flags() -> None:
    done = subprocess.run([sys.executable, str(BENCH), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for flag in ("--quick", "--visitors", "--rate", "--duration", "--idle", "--database-url", "--redis-url",
                 "--json-only"):
        assert flag in done.stdout
