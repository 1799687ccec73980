"""What the benchmarks share: wrk, server processes, the example experiment, medians."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LUA = Path(__file__).resolve().parent / "lua"
ADMIN_TOKEN = "bench-admin-token"
LOG_LEVEL = "warning"

# The example experiment of the spec: the four ranker weights, a reference and five arms.
SIMILAR_ITEMS: dict[str, Any] = {
    "name": "similar-items",
    "parameters": [
        {"name": "text_match", "type": "float", "low": 0.0, "high": 2.0},
        {"name": "distance", "type": "float", "low": 0.0, "high": 2.0},
        {"name": "price_diff", "type": "float", "low": 0.0, "high": 2.0},
        {"name": "region", "type": "int", "low": 0, "high": 3},
    ],
    "reference_config": {"text_match": 1.0, "distance": 1.0, "price_diff": 1.0, "region": 1},
    "arms": [
        {"text_match": 1.2, "distance": 0.8, "price_diff": 1.0, "region": 1},
        {"text_match": 0.8, "distance": 1.2, "price_diff": 0.5, "region": 2},
        {"text_match": 1.5, "distance": 0.5, "price_diff": 1.5, "region": 0},
        {"text_match": 1.0, "distance": 1.4, "price_diff": 0.7, "region": 3},
        {"text_match": 0.6, "distance": 0.9, "price_diff": 1.8, "region": 1},
    ],
    "reference_share": 0.2,
}


class BenchError(RuntimeError):
    """A benchmark could not run (missing tool, server that did not start, bad data)."""


ASSIGNMENT_PATH = "/v1/experiments/similar-items/assignment"


def assignment_scope(unit: int, headers: Sequence[tuple[bytes, bytes]] = ()) -> dict[str, Any]:
    """The ASGI scope of ``GET`` the example experiment's assignment for unit ``u<unit>``,
    for the benchmarks that call the application in-process (no sockets)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": ASSIGNMENT_PATH,
        "raw_path": ASSIGNMENT_PATH.encode(),
        "root_path": "",
        "query_string": b"unit=u%d" % unit,
        "headers": [(b"host", b"bench"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }


def say(message: str) -> None:
    print(message, flush=True)


def ensure_wrk() -> str:
    """The path of wrk, installing Debian's package if it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    if shutil.which("apt-get") is None:
        raise BenchError("wrk is not installed and apt-get is not available; install wrk")
    sudo = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    if sudo is None:
        raise BenchError("wrk is not installed and this user cannot run apt-get; install wrk")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = [*sudo, "apt-get", "install", "-y", "-q", "wrk"]
    say(f"wrk is missing; running: {' '.join(install)}")
    if subprocess.run(install, env=env, check=False).returncode != 0:
        update = [*sudo, "apt-get", "update", "-q"]
        say(f"install failed; running: {' '.join(update)} and retrying")
        subprocess.run(update, env=env, check=False)
        subprocess.run(install, env=env, check=False)
    found = shutil.which("wrk")
    if not found:
        raise BenchError("could not install wrk with apt-get; install it by hand and re-run")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ranktune_command() -> list[str]:
    script = Path(sys.executable).parent / "ranktune"
    return [str(script)] if script.exists() else [sys.executable, "-m", "ranktune"]


@dataclass
class Server:
    """A server process on 127.0.0.1:port, its output in a log file."""

    name: str
    command: list[str]
    port: int
    log_path: Path
    env: dict[str, str] | None = None
    process: subprocess.Popen[bytes] | None = None
    # Where the command runs (``python -m ranktune`` there runs that directory's code).
    cwd: Path = ROOT

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> Server:
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.command,
            cwd=self.cwd,
            env={**os.environ, **(self.env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"{self.name} exited at start; see {self.log_path}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as answer:
                    if answer.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        self.stop()
        raise BenchError(f"{self.name} did not answer /health within {timeout:.0f} s")

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful stop (SIGINT, as Ctrl-C: the server commits what it acknowledged)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid


def http_json(
    method: str, url: str, body: Any = None, *, admin: bool = False, timeout: float = 10
) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if admin:
        request.add_header("Authorization", f"Bearer {ADMIN_TOKEN}")
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return json.loads(answer.read())


def start_ranktune(
    database_url: str, log_path: Path, *, code: Path | None = None, **env: str
) -> Server:
    """``ranktune serve`` of this checkout, or of the source tree ``code`` (another commit's
    files, e.g. ``git archive main | tar -x -C DIR``: ``python -m ranktune`` run there imports
    them before the installed ones)."""
    port = free_port()
    command = [*ranktune_command()] if code is None else [sys.executable, "-m", "ranktune"]
    server = Server(
        "ranktune",
        [*command, "serve", "--upgrade", "--port", str(port), "--log-level", LOG_LEVEL],
        port,
        log_path,
        env={"RANKTUNE_DATABASE_URL": database_url, "RANKTUNE_ADMIN_TOKEN": ADMIN_TOKEN, **env},
        cwd=code or ROOT,
    )
    return server.start()


def create_example_experiment(server: Server) -> dict[str, Any]:
    created: dict[str, Any] = http_json(
        "POST", server.url + "/v1/experiments", SIMILAR_ITEMS, admin=True
    )
    # The snapshot refresher picks the new experiment up within snapshot_refresh_s.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            # With the admin token, which a server that requires a client key accepts too.
            http_json(
                "GET", f"{server.url}/v1/experiments/similar-items/assignment?unit=warm", admin=True
            )
            return created
        except urllib.error.HTTPError:
            time.sleep(0.1)
    raise BenchError("the example experiment is not served 10 s after its creation")


def run_wrk(
    url: str,
    script: str,
    script_args: Sequence[str],
    *,
    duration: float,
    connections: int,
    threads: int = 1,
) -> dict[str, Any]:
    """Run wrk for ``duration`` seconds; the figures of the script's ``BENCH {...}`` line."""
    command = [
        ensure_wrk(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration:g}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(LUA / script),
        url,
        "--",
        *script_args,
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration + 60, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    for line in done.stdout.splitlines():
        if line.startswith("BENCH "):
            figures: dict[str, Any] = json.loads(line[len("BENCH ") :])
            seconds = figures["duration_us"] / 1e6
            figures["seconds"] = seconds
            figures["rps"] = figures["requests"] / seconds
            figures["errors"] = sum(v for k, v in figures.items() if k.startswith("errors_"))
            return figures
    raise BenchError(f"wrk printed no BENCH line:\n{done.stdout}\n{done.stderr}")


def load_average() -> tuple[float, float, float]:
    """The machine's 1, 5 and 15 minute load averages (it is shared: say how busy it was)."""
    one, five, fifteen = os.getloadavg()
    return (round(one, 2), round(five, 2), round(fifteen, 2))


def process_cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) the process has used so far, from /proc (Linux); None
    elsewhere. Per request, it is a figure the other tenants of a shared machine disturb far
    less than throughput: their load steals wall time, not the process's own CPU time."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # utime and stime are fields 14 and 15 of stat(5); fields[0] here is field 3 (state).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}"


def fmt_ms(microseconds: float) -> str:
    return f"{microseconds / 1000:.2f}"
