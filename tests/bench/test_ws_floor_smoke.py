"""bench/ws_floor.py end to end on a tiny run: the three phases run against real servers and the last line
is the JSON it documents. Timings are not checked: they depend on the machine."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "ws_floor.py"


@pytest.mark.slow
def test_ws_floor_tiny_run_prints_its_figures(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(BENCH), "--count", "30", "--concurrency", "10"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(result) == {"framework", "chatsvc_new", "chatsvc_resume"}
    for figures in result.values():
        assert set(figures) == {"per_s", "cpu_us", "cpu_ratio"}
        assert all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in figures.values()), figures
    assert result["framework"]["cpu_ratio"] == 1.0
    assert "chatsvc, resume" in done.stdout
