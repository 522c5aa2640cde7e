"""nginx in front of real chatsvc processes: the config is rendered from deploy/nginx/ and nginx runs as an
unprivileged foreground process whose pid file, logs and temporary files live in a directory of its own."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import need
from tests.support.server import free_port

ROOT = Path(__file__).resolve().parents[2]
RENDER = ROOT / "deploy" / "nginx" / "render.py"


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)


def nginx_missing() -> str | None:
    return None if nginx_binary() else "nginx is not installed (apt-get install -y nginx)"


def render(*args: str) -> str:
    done = subprocess.run([sys.executable, str(RENDER), *args], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


@dataclass
class Nginx:
    port: int
    prefix: Path
    proc: subprocess.Popen[bytes]

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


@pytest.fixture
def nginx_prefix() -> Iterator[Path]:
    """A directory the unprivileged nginx can write (pytest's tmp_path is private to root)."""
    need(nginx_missing())
    prefix = Path(tempfile.mkdtemp(prefix="chatsvc-nginx-"))
    prefix.chmod(0o755)
    try:
        yield prefix
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


def start_nginx(prefix: Path, upstreams: list[str], timeout: float = 20.0) -> Nginx:
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(render(*upstreams, "--listen", f"127.0.0.1:{port}", "--main", str(prefix)))
    command = [nginx_binary() or "nginx", "-p", str(prefix), "-c", str(conf), "-e", "stderr"]
    if os.geteuid() == 0:  # run unprivileged, as a deployment would
        shutil.chown(prefix, "nobody")
        shutil.chown(conf, "nobody")
        command = ["runuser", "-u", "nobody", "--", *command]
    with open(prefix / "stderr.log", "wb") as stderr:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
    server = Nginx(port, prefix, proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited with {proc.returncode}: {(prefix / 'stderr.log').read_text()}")
        try:
            httpx.get(f"{server.http}/healthz", timeout=1.0)
            return server
        except httpx.HTTPError:
            time.sleep(0.05)
    stop_nginx(server)
    raise RuntimeError("nginx did not start listening")


def stop_nginx(server: Nginx) -> None:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(10)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(10)
