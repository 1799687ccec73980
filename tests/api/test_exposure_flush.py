"""Server-counted exposures: a failed flush keeps the counts, a slow one never doubles them."""

from __future__ import annotations

from concurrent.futures import Future

from sqlalchemy.exc import OperationalError

from api.ingest import EventRow, IngestResult
from api.runtime import Runtime
from tests.conftest import settings_for


class StubWriter:
    def __init__(self) -> None:
        self.futures: list[Future[IngestResult]] = []
        self.rows: list[list[EventRow]] = []

    def submit(self, rows: list[EventRow]) -> Future[IngestResult]:
        future: Future[IngestResult] = Future()
        self.futures.append(future)
        self.rows.append(rows)
        return future


def runtime_with_stub(sqlite_url: str) -> tuple[Runtime, StubWriter]:
    runtime = Runtime(settings_for(sqlite_url))
    stub = StubWriter()
    runtime.writer = stub  # type: ignore[assignment]
    return runtime, stub


def test_failed_flush_puts_the_counts_back(sqlite_url: str) -> None:
    runtime, stub = runtime_with_stub(sqlite_url)
    for _ in range(3):
        runtime.serving.count_exposure(1, 7, "target")
    failure = OperationalError("INSERT", {}, Exception("disk I/O error"))
    runtime.serving.count_exposure(1, 1, "reference")

    def fail_soon() -> None:
        stub.futures[0].set_exception(failure)

    import threading

    timer = threading.Timer(0.05, fail_soon)
    timer.start()
    runtime.flush_exposures(timeout_s=5)
    timer.join()
    assert runtime.serving.drain_exposures() == {(1, 7, "target", 0): 3, (1, 1, "reference", 0): 1}
    runtime.engine.dispose()


def test_slow_flush_that_later_commits_is_not_counted_twice(sqlite_url: str) -> None:
    runtime, stub = runtime_with_stub(sqlite_url)
    runtime.serving.count_exposure(1, 7, "target")
    runtime.flush_exposures(timeout_s=0.01)  # gives up waiting; the write is still pending
    stub.futures[0].set_result(IngestResult(accepted=1))
    assert runtime.serving.drain_exposures() == {}
    assert [row.count for row in stub.rows[0]] == [1]
    runtime.engine.dispose()
