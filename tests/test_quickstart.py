"""The README's first command: `chatsvc serve --demo` starts on SQLite and prints the URLs to open."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.poll import poll
from tests.support.server import agent, free_port

README = (Path(__file__).parents[1] / "README.md").read_text()


def test_readme_quick_start_is_two_commands() -> None:
    block = re.search(r"## Quick start\n\n```sh\n(.*?)```", README, re.S)
    assert block
    lines = [line for line in block.group(1).splitlines() if line.strip()]
    assert lines == ["pip install -e . && chatsvc serve --demo", "pip install -e '.[test]' && python -m pytest"]


async def test_serve_demo_prints_urls_and_serves(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "CHATSVC_PORT": str(port)}
    env.pop("CHATSVC_DATABASE_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "chatsvc", "serve", "--demo"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines: list[str] = []
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any("agent socket" in line for line in lines):
            lines.append(proc.stdout.readline())
        out = "".join(lines)
        assert f"http://127.0.0.1:{port}/" in out
        assert f"ws://127.0.0.1:{port}/ws/visitor" in out
        console = re.search(r"agent console +(\S+) .*password '([^']+)': ([^,)\s]+)", out)
        assert console and console.group(1) == f"http://127.0.0.1:{port}/console/", out
        def ready() -> int:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code
            except httpx.HTTPError:
                return 0

        poll(ready, lambda status: status == 200)
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).json()
        assert ready == {"status": "ok", "checks": {"database": True, "broker": True}}
        assert (tmp_path / "chatsvc.db").exists(), "the default store is a SQLite file in the working directory"
        client, welcome = await agent(f"ws://127.0.0.1:{port}", "demo-agent-token")
        assert welcome["agent"]["name"] == "Demo Agent"
        await client.close()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20, follow_redirects=True) as browser:  # a demo console log-in
            token = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/console/login").text)
            assert token
            landed = browser.post("/console/login", data={"csrf_token": token.group(1), "email": console.group(3),
                                                          "password": console.group(2)})
            assert landed.status_code == 200 and str(landed.url).endswith("/console/queue")
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()
