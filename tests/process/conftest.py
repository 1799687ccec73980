"""Real ``ranktune serve`` processes for crash and replica tests.

``server_factory(database_url, **env)`` starts the console script on a free loopback port,
waits for ``/health`` and returns a :class:`ServerProcess`; ``server_factory.many(n, ...)``
starts n replicas side by side; ``server_factory.restart(server)`` kills one and starts it
again on the same port (its clients keep their URL). Every process it started is
killed (SIGKILL) and waited for in the fixture's teardown, whatever the test did, and its
output goes to a log file rather than a pipe, so no pipe can fill up or be left open.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN

_SCRIPT = Path(sys.executable).parent / "ranktune"
# The console script of this virtualenv; the same entry point through -m without one.
RANKTUNE = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "ranktune"]
STARTUP_DEADLINE_S = 40.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServerProcess:
    """One ``ranktune serve`` subprocess."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        port: int,
        log_path: Path,
        environment: dict[str, str],
    ) -> None:
        self.popen = popen
        self.port = port
        self.log_path = log_path
        self.environment = environment
        self.base_url = f"http://127.0.0.1:{port}"

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill9(self) -> None:
        """SIGKILL: no shutdown hook, no flush, no graceful close of anything."""
        if self.alive():
            os.kill(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: the process hangs; the kernel still accepts connections for it."""
        os.kill(self.popen.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.popen.pid, signal.SIGCONT)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def client(self, timeout: float = 10.0) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=timeout)


def _wait_healthy(server: ServerProcess, deadline_s: float) -> bool:
    deadline = time.monotonic() + deadline_s
    with httpx.Client(base_url=server.base_url, timeout=1.0) as client:
        while time.monotonic() < deadline:
            if not server.alive():
                return False
            try:
                if client.get("/health").status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    return False


class ServerFactory:
    """Starts ``ranktune serve`` processes and remembers them, so that teardown kills them."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[ServerProcess] = []

    def __call__(self, database_url: str, **env: str) -> ServerProcess:
        """One server, healthy, with ``env`` (``RANKTUNE_*`` names) on top of the defaults."""
        return self.many(1, database_url, **env)[0]

    def many(self, count: int, database_url: str, **env: str) -> list[ServerProcess]:
        """``count`` servers on one database, started side by side (they boot in parallel)."""
        values = {
            "RANKTUNE_DATABASE_URL": database_url,
            "RANKTUNE_ADMIN_TOKEN": ADMIN_TOKEN,
            "RANKTUNE_SCHEDULER_ENABLED": "false",
            "RANKTUNE_SNAPSHOT_REFRESH_S": "0.25",
            "RANKTUNE_EXPOSURE_FLUSH_S": "0.5",
        }
        values.update({key.upper(): value for key, value in env.items()})
        environment = {**os.environ, **values}
        servers = [self._launch(environment) for _ in range(count)]
        for index, server in enumerate(servers):
            for attempt in range(3):
                if _wait_healthy(server, STARTUP_DEADLINE_S):
                    break
                server.kill9()
                # A free port can be taken between our probe and the server's bind.
                if attempt == 2 or "address already in use" not in server.log().lower():
                    pytest.fail(f"ranktune serve did not become healthy:\n{server.log()}")
                server = servers[index] = self._launch(environment)
        return servers

    def restart(self, server: ServerProcess) -> ServerProcess:
        """SIGKILL ``server``, then start it again on the same port and settings."""
        server.kill9()
        again = self._launch(server.environment, port=server.port)
        if not _wait_healthy(again, STARTUP_DEADLINE_S):
            pytest.fail(f"ranktune serve did not restart:\n{again.log()}")
        return again

    def _launch(self, environment: dict[str, str], port: int | None = None) -> ServerProcess:
        port = port or free_port()
        log_path = self.log_dir / f"server-{len(self.started)}-{port}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                [*RANKTUNE, "serve", "--host", "127.0.0.1", "--port", str(port)],
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        server = ServerProcess(popen, port, log_path, environment)
        self.started.append(server)
        return server

    def kill_all(self) -> None:
        for server in self.started:
            if server.alive():
                server.popen.kill()
            server.popen.wait(timeout=30)  # SIGKILL cannot be ignored; this reaps the child


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[ServerFactory]:
    """Start ``ranktune serve`` processes; all of them are killed at teardown.

    Request the database fixture *before* this one, so that the servers die before their
    database is dropped.
    """
    factory = ServerFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.kill_all()
