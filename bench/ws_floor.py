"""What a visitor's connect + hello + resume costs chatsvc, against the bare framework it runs on.

`bench/ws_load.py` compares chatsvc with a bare `websockets` echo server. This script separates the cost
of the stack chatsvc is built on (uvicorn with its websockets implementation, Starlette's routing) from
chatsvc's own work, in one run and with one client:

- **framework**: uvicorn + Starlette with one websocket route that accepts, reads one frame, answers with
  two frames (as chatsvc's welcome and replay-done do) and waits for the close; no application code.
- **chatsvc, new visitors**: `chatsvc serve` on SQLite (or `--database-url`); each socket sends a hello
  without a token (a visitor and a conversation are created).
- **chatsvc, resumes**: the same server; each socket resumes one of the visitors above with their token
  and cursor (the replay finds nothing; `bench/ws_load.py`'s storm replays one missed event each).

For each it prints handshakes per second, server CPU per handshake (from /proc) and the ratio to the
framework. The last line is one JSON object. The client (one process, `--concurrency` sockets opening at
once) is the same for all three, so the ratios hold on a noisy machine even when the rates do not.

    python bench/ws_floor.py [--count 2000] [--concurrency 100] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402

FRAMEWORK_APP = """
import sys
import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

async def endpoint(websocket):
    await websocket.accept()
    await websocket.receive_text()
    await websocket.send_text('{"type":"welcome"}')
    await websocket.send_text('{"type":"replayed"}')
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass

app = Starlette(routes=[WebSocketRoute("/ws/visitor", endpoint)])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), ws="websockets-sansio", http="httptools",
            loop="uvloop", log_level="warning")
"""

SERVER_ENV = {"CHATSVC_LOG_LEVEL": "warning", "CHATSVC_RATE_PER_SECOND": "1000000",
              "CHATSVC_RATE_BURST": "1000000", "CHATSVC_CONNECT_RATE": "0"}


async def storm(port: int, pid: int, hellos: list[str], concurrency: int) -> dict[str, Any]:
    """Open one socket per hello, `concurrency` at a time; each waits for the welcome and the end of the
    replay. Returns the rate, the server's CPU per handshake and the welcomes."""
    sem = asyncio.Semaphore(concurrency)
    sockets: list[Any] = []
    welcomes: list[dict[str, Any]] = []

    async def one(hello: str) -> None:
        async with sem:
            ws = await connect(f"ws://127.0.0.1:{port}/ws/visitor", compression="deflate", open_timeout=60)
            await ws.send(hello)
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
                if frame["type"] == "welcome":
                    welcomes.append(frame)
                if frame["type"] in ("replayed", "error"):
                    break
            sockets.append(ws)

    cpu0, t0 = common.proc_cpu_seconds(pid), time.monotonic()
    await asyncio.gather(*(one(h) for h in hellos))
    cpu1, t1 = common.proc_cpu_seconds(pid), time.monotonic()
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    await asyncio.sleep(0.5)
    return {"per_s": len(hellos) / (t1 - t0), "cpu_us": (cpu1 - cpu0) * 1e6 / len(hellos), "welcomes": welcomes}


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(command, env={**os.environ, **env}, stdout=out, stderr=out, start_new_session=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="handshakes in each phase")
    parser.add_argument("--concurrency", type=int, default=100, help="handshakes in flight at once")
    parser.add_argument("--database-url", help="chatsvc's store (default: SQLite in a temporary directory)")
    args = parser.parse_args()
    common.raise_nofile()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="ws-floor-") as tmp:
        work = Path(tmp)
        (work / "framework.py").write_text(FRAMEWORK_APP)
        port = common.free_port()
        proc = start([sys.executable, str(work / "framework.py"), str(port)], {}, work / "framework.log")
        try:
            common.wait_tcp(port, proc)
            hello = json.dumps({"type": "hello", "v": 1, "site": "default"})
            await storm(port, proc.pid, [hello] * min(200, args.count), args.concurrency)  # warm-up
            r = await storm(port, proc.pid, [hello] * args.count, args.concurrency)
            results["framework"] = {"per_s": r["per_s"], "cpu_us": r["cpu_us"]}
        finally:
            common.stop_process(proc)

        port = common.free_port()
        url = args.database_url or f"sqlite+aiosqlite:///{work / 'floor.db'}"
        env = {**SERVER_ENV, "CHATSVC_DATABASE_URL": url, "CHATSVC_HOST": "127.0.0.1", "CHATSVC_PORT": str(port),
               "CHATSVC_REDIS_URL": ""}
        proc = start([sys.executable, "-m", "chatsvc", "serve"], env, work / "chatsvc.log")
        try:
            common.wait_http_ok(f"http://127.0.0.1:{port}/healthz", proc, timeout=60)
            r = await storm(port, proc.pid, [hello] * args.count, args.concurrency)
            results["chatsvc_new"] = {"per_s": r["per_s"], "cpu_us": r["cpu_us"]}
            resumes = [json.dumps({"type": "hello", "v": 1, "site": "default", "token": w["token"],
                                   "last_seq": w["conversation"]["last_seq"]}) for w in r["welcomes"]]
            r = await storm(port, proc.pid, resumes, args.concurrency)
            results["chatsvc_resume"] = {"per_s": r["per_s"], "cpu_us": r["cpu_us"]}
        finally:
            common.stop_process(proc)

    base = results["framework"]["cpu_us"]
    print(f"{'':28}{'handshakes/s':>14}{'server CPU µs each':>20}{'× framework':>13}")
    for name, label in (("framework", "uvicorn + Starlette, bare"), ("chatsvc_new", "chatsvc, new visitor"),
                        ("chatsvc_resume", "chatsvc, resume")):
        r = results[name]
        r["cpu_ratio"] = round(r["cpu_us"] / base, 2)
        print(f"{label:28}{r['per_s']:14.0f}{r['cpu_us']:20.0f}{r['cpu_ratio']:13.2f}")
    print(json.dumps({k: {kk: round(vv, 2) for kk, vv in v.items()} for k, v in results.items()}))


if __name__ == "__main__":
    asyncio.run(main())
