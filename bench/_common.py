"""Helpers shared by the benchmarks: process CPU and memory from /proc, percentiles, ports, limits.

Everything here reads Linux's /proc directly, so the benchmarks need no extra packages.
"""

from __future__ import annotations

import glob
import os
import resource
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def raise_nofile() -> tuple[int, int]:
    """Raise this process's open-file limit to the hard limit (children inherit it); returns (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1_048_576
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft, hard


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads included (fields 14 and 15 of /proc/PID/stat)."""
    return proc_cpu_seconds_path(f"/proc/{pid}/stat")


def proc_cpu_seconds_path(path: str) -> float:
    with open(path, "rb") as f:
        data = f.read()
    # The command name may contain spaces; the fields after it start after the last ')'.
    fields = data[data.rindex(b")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def proc_rss_kb(pid: int) -> int:
    """Resident set size of a process in KB."""
    with open(f"/proc/{pid}/statm", "rb") as f:
        return int(f.read().split()[1]) * PAGE_KB


def machine_busy_seconds() -> float:
    """CPU seconds all processes of the machine used (steal time included: it was not ours to use)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def self_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def machine_notes() -> dict[str, str]:
    """What the figures were measured on."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gb = "?"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_gb = f"{int(line.split()[1]) / 1024 / 1024:.0f}"
                    break
    except OSError:
        pass
    return {"cpu": f"{os.cpu_count()} x {model}", "memory_gb": mem_gb, "kernel": os.uname().release}


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of already sorted values, nearest-rank; NaN when empty."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), int(-(-q * len(sorted_values) // 100))))
    return sorted_values[rank - 1]


@dataclass
class LatencySummary:
    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of_ns(cls, values_ns: Iterable[int]) -> LatencySummary:
        ordered = sorted(values_ns)
        if not ordered:
            return cls(0, float("nan"), float("nan"), float("nan"))
        return cls(len(ordered), percentile(ordered, 50) / 1e6, percentile(ordered, 99) / 1e6, ordered[-1] / 1e6)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_tcp(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port} after {timeout}s")


def wait_http_ok(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
        try:
            with opener.open(url, timeout=0.5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer 200 within {timeout}s")


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 15.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@dataclass(frozen=True)
class CpuSnapshot:
    """A process's CPU time two ways: utime+stime (10 ms ticks, includes exited threads) and the per-thread
    run time of /proc/PID/task/TID/schedstat (nanoseconds)."""

    ticks_total: float
    threads_ns: dict[int, int]

    @classmethod
    def take(cls, pid: int) -> CpuSnapshot:
        threads: dict[int, int] = {}
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                try:
                    with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as f:
                        threads[int(tid)] = int(f.read().split()[0])
                except (OSError, ValueError, IndexError):
                    pass
        except OSError:
            pass
        return cls(proc_cpu_seconds(pid), threads)

    def since(self, earlier: CpuSnapshot) -> float:
        """CPU seconds of the whole process between two snapshots."""
        if self.threads_ns and set(earlier.threads_ns) <= set(self.threads_ns):
            total = sum(ns - earlier.threads_ns.get(tid, 0) for tid, ns in self.threads_ns.items()) / 1e9
        else:  # a thread ended in between: only the coarse total still counts it
            total = self.ticks_total - earlier.ticks_total
        return total

    def thread_since(self, earlier: CpuSnapshot, tid: int) -> float:
        if tid in self.threads_ns and tid in earlier.threads_ns:
            return (self.threads_ns[tid] - earlier.threads_ns[tid]) / 1e9
        return float("nan")


class ProcessMeter:
    """CPU seconds and RSS of one process (the server) and of this one (the load generator) over a window."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._start: tuple[float, CpuSnapshot, float, float] | None = None

    def start(self) -> None:
        self._start = (time.monotonic(), CpuSnapshot.take(self.pid), self_cpu_seconds(), machine_busy_seconds())

    def stop(self) -> Window:
        assert self._start is not None, "start() first"
        wall0, server0, client0, machine0 = self._start
        server1 = CpuSnapshot.take(self.pid)
        server_cpu = server1.since(server0)
        client_cpu = self_cpu_seconds() - client0
        other = machine_busy_seconds() - machine0 - server_cpu - client_cpu
        return Window(wall=time.monotonic() - wall0, server_cpu=server_cpu, client_cpu=client_cpu,
                      server_rss_kb=proc_rss_kb(self.pid),
                      server_main_thread_cpu=server1.thread_since(server0, self.pid), other_cpu=max(0.0, other))


@dataclass
class Window:
    wall: float
    server_cpu: float
    client_cpu: float
    server_rss_kb: int
    server_main_thread_cpu: float = 0.0  # the event loop's thread; the rest is helper threads (SQLite, ...)
    other_cpu: float = 0.0  # every other process on the machine (and hypervisor steal)

    @property
    def other_busy(self) -> float:
        """Cores' worth of CPU that processes other than the server and the load generator took."""
        return self.other_cpu / self.wall if self.wall > 0 else 0.0

    @property
    def client_busy(self) -> float:
        """Share of one core the load generator used; near 1.0 means it, not the server, set the pace."""
        return self.client_cpu / self.wall if self.wall > 0 else 0.0

    @property
    def server_busy(self) -> float:
        return self.server_cpu / self.wall if self.wall > 0 else 0.0


def count_duplicates(counts: Counter[str]) -> int:
    return sum(n - 1 for n in counts.values() if n > 1)


# ------------------------------------------------------------------ a PostgreSQL of one's own


def postgres_binaries() -> Path | None:
    """The directory of initdb and pg_ctl (Debian's layout first), or None when the server is not installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl and shutil.which("initdb") else None


class PrivatePostgres:
    """A PostgreSQL cluster of one's own (initdb in a temporary directory, its own port), which may be stopped
    and started again without disturbing anyone else; about a second to set up. initdb and postgres refuse
    to run as root, so as root they run as the `postgres` user, which must be able to enter `workdir`
    (default: the system's temporary directory). `options` are added to the server's command line."""

    def __init__(self, workdir: Path | None = None, options: str = "") -> None:
        binaries = postgres_binaries()
        if binaries is None:
            raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found")
        self.bin = binaries
        self.workdir = workdir
        self.options = options
        self.root = Path(tempfile.mkdtemp(prefix="chatsvc-pg-", dir=workdir))
        self.data = self.root / "data"
        self.port = free_port()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        done = subprocess.run([*self.as_user, *command], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stdout}{done.stderr}")

    def init(self) -> PrivatePostgres:
        if self.as_user:
            if self.workdir is not None:
                os.chmod(self.workdir, 0o755)
            shutil.chown(self.root, "postgres")
            self.root.chmod(0o700)
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync",
                  "-E", "UTF8")
        return self

    def start(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "postgres.log"), "-w",
                  "-o", f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 {self.options}".rstrip(),
                  "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        try:
            self.stop("immediate")
        except RuntimeError:
            pass  # not running
        shutil.rmtree(self.root, ignore_errors=True)
