"""Hostile clients against a real ``ranktune serve``: they can neither take over an
experiment nor freeze the replica.

1. The take-over, replayed: one unauthenticated request of 1,000 events x count 1,000,000 on
   a ticket of the worst arm (obtained with 17 free assignment calls) used to take that arm
   from 3% to 100% of the target traffic and its P(best) to 1.0. Now ``count`` is bounded
   (that request is a 422 and stores nothing), and the strongest request the contract
   allows (1,000 x 1,000) credits at most one contact per ticket the attacker was served:
   the rest is stored, acknowledged and quarantined, and the posterior barely moves.
2. The freeze: a 2 MB body of empty objects used to block every request, assignments
   included, for 10 s. Now bodies of POST /v1/events are bounded and checked before any
   item is validated: an assignment probe running meanwhile never waits 100 ms.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN, similar_items
from tests.process.conftest import ServerFactory, ServerProcess

pytestmark = pytest.mark.slow

NAME = "similar-items"
URL = f"/v1/experiments/{NAME}"
# True contact rates per exposure: the reference, then the three arms (the last is worst).
REFERENCE_RATE = 0.05
ARM_RATES = (0.07, 0.05, 0.02)
TICKS, UNITS_PER_TICK = 10, 250


def _traffic_tick(
    client: httpx.Client, rates: dict[int, float], rng: random.Random, tick: int
) -> dict[int, int]:
    """One window of honest traffic: every unit is served, some contact; then a tick.
    The honest contacts per arm."""
    events = []
    contacts: dict[int, int] = {}
    for unit in range(UNITS_PER_TICK):
        served = client.get(f"{URL}/assignment", params={"unit": f"u{tick}-{unit}"}).json()
        if rng.random() < rates[served["arm_id"]]:
            events.append(
                {"ticket": served["ticket"], "type": "contact", "event_id": f"t{tick}-u{unit}"}
            )
            contacts[served["arm_id"]] = contacts.get(served["arm_id"], 0) + 1
    if events:
        assert client.post("/v1/events", json={"events": events}).status_code == 200
    assert client.post(f"{URL}/tick", headers=ADMIN).status_code == 200
    return contacts


def _arms(client: httpx.Client) -> dict[int, dict[str, Any]]:
    stats = client.get(f"{URL}/stats", headers=ADMIN, params={"seed": 1}).json()
    return {arm["arm_id"]: arm for arm in stats["arms"] if arm["origin"] != "reference"}


def test_one_request_cannot_take_over_an_experiment(
    sqlite_url: str, server_factory: ServerFactory
) -> None:
    server = server_factory(sqlite_url)
    rng = random.Random(7)
    with server.client(timeout=30.0) as client:
        created = client.post(
            "/v1/experiments",
            json=similar_items(max_events_per_exposure=None, salt="take-over"),
            headers=ADMIN,
        ).json()
        arm_ids = [arm["id"] for arm in created["arms"] if arm["origin"] != "reference"]
        rates = {
            created["reference_arm_id"]: REFERENCE_RATE,
            **dict(zip(arm_ids, ARM_RATES, strict=True)),
        }
        for tick in range(TICKS):
            _traffic_tick(client, rates, rng, tick)
        before = _arms(client)
        # The attacker's target: the arm the bandit rates worst. Usually the 2% arm; the
        # server's draws are not seeded, and after 2,500 units the 5% arm sometimes looks
        # worse. Never the best one.
        worst = min(before, key=lambda arm_id: before[arm_id]["posterior_mean"])
        assert worst in arm_ids[1:]

        # The attacker asks for assignments until it holds a ticket of the worst arm.
        tickets = []
        for call in range(1, 3001):
            served = client.get(f"{URL}/assignment", params={"unit": f"attacker-{call}"}).json()
            if served["arm_id"] == worst:
                tickets.append(served["ticket"])
                if call >= 17:
                    break
        assert tickets, "the worst arm was never served to the attacker"

        def flood(count: int) -> httpx.Response:
            events = [
                {"ticket": tickets[0], "type": "contact", "count": count, "event_id": f"x{i}"}
                for i in range(1000)
            ]
            return client.post("/v1/events", json={"events": events})

        original = flood(1_000_000)
        assert original.status_code == 422, original.text
        assert original.json()["field"] == "events[0].count"
        strongest = flood(1000)
        assert strongest.status_code == 200
        assert strongest.json() == {"accepted": 1000, "duplicates": 0}

        # Honest traffic goes on; the tick follows.
        honest = _traffic_tick(client, rates, rng, TICKS).get(worst, 0)
        after = _arms(client)
        _traffic_tick(client, rates, rng, TICKS + 1)  # the window served after the attack
        attack_tick, next_tick = client.get(
            f"{URL}/ticks", headers=ADMIN, params={"after": TICKS}
        ).json()

    row = next(row for row in attack_tick["arms"] if row["arm_id"] == worst)
    # 1,000 x 1,000 contacts reported on one ticket: one credited, the rest quarantined.
    assert row["quarantined_events"] == 1000 * 1000 - 1
    assert attack_tick["uncredited"]["over_ticket_limit"]["contact"] == 1000 * 1000 - 1
    assert after[worst]["quarantined_events"] == 1000 * 1000 - 1
    # The attacker's request credited one contact (its ticket's limit) beside honest traffic.
    credited_by_attack = row["target_events"] - honest
    assert credited_by_attack == 1
    assert after[worst]["alpha"] - before[worst]["alpha"] == row["target_events"]
    # ... as one more honest contact would: the posterior barely moves, the arm stays the
    # worst, and the bandit keeps its traffic low (the original attack gave it 100%).
    alpha, beta = after[worst]["alpha"], after[worst]["beta"]
    effect = alpha / (alpha + beta) - (alpha - 1) / (alpha - 1 + beta)
    assert after[worst]["prob_best"] < 0.3
    assert max(after, key=lambda arm_id: after[arm_id]["posterior_mean"]) != worst
    exposures = {row["arm_id"]: row["exposures"] for row in next_tick["arms"]}
    share = exposures[worst] / sum(exposures.values())
    assert share < 0.3
    print(
        f"\nworst arm {worst}: posterior mean {before[worst]['posterior_mean']:.3f} -> "
        f"{after[worst]['posterior_mean']:.3f}, P(best) {before[worst]['prob_best']:.3f} -> "
        f"{after[worst]['prob_best']:.3f}; the attack's effect on the mean {effect:.4f}; "
        f"traffic share next window {share:.1%}; quarantined {row['quarantined_events']:.0f}"
    )


# -- the freeze ----------------------------------------------------------------------------
class AssignmentProbe:
    """Asks for an assignment every few milliseconds and records how long each one took."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        with self.server.client(timeout=30.0) as client:
            number = 0
            while not self._stop.is_set():
                number += 1
                started = time.perf_counter()
                answer = client.get(f"{URL}/assignment", params={"unit": f"probe-{number}"})
                self.latencies.append(time.perf_counter() - started)
                if answer.status_code != 200:
                    self.failures.append(answer.text)
                time.sleep(0.005)

    def __enter__(self) -> AssignmentProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _hostile_bodies(body_limit: int) -> dict[str, bytes]:
    def array(item: bytes, size: int) -> bytes:
        return b'{"events":[' + b",".join([item] * ((size - 14) // (len(item) + 1))) + b"]}"

    return {
        "2 MB of empty objects": array(b"{}", 2_000_000),
        "empty objects up to the body limit": array(b"{}", body_limit - 16),
        "numbers up to the body limit": array(b"1", body_limit - 16),
        "nested arrays up to the body limit": array(b"[[[[[[]]]]]]", body_limit - 16),
    }


def _post(client: httpx.Client, body: bytes, *, chunked: bool) -> int:
    headers = {"Content-Type": "application/json"}
    if chunked:
        content: Any = (body[start : start + 65536] for start in range(0, len(body), 65536))
    else:
        content = body
    try:
        return client.post("/v1/events", content=content, headers=headers).status_code
    except httpx.TransportError:
        return 0  # the server may answer 413 and close before the whole body is sent


def _worst_probe_wait(server: ServerProcess, bodies: dict[str, bytes]) -> tuple[float, Any]:
    """Post every hostile body (declared and chunked, then four clients at once) while a
    probe asks for assignments; the probe's worst wait and the statuses the bodies got."""
    statuses: dict[str, set[int]] = {}
    with AssignmentProbe(server) as probe:
        time.sleep(0.3)
        for name, body in bodies.items():
            for chunked in (False, True):
                with server.client(timeout=30.0) as client:
                    statuses.setdefault(name, set()).add(_post(client, body, chunked=chunked))

        def post_all() -> None:
            with server.client(timeout=30.0) as client:
                for body in bodies.values():
                    _post(client, body, chunked=False)

        posters = [threading.Thread(target=post_all) for _ in range(4)]
        for poster in posters:
            poster.start()
        for poster in posters:
            poster.join(timeout=60)
        time.sleep(0.3)
    assert probe.failures == []
    print(
        f"\nassignment probe during hostile bodies: {len(probe.latencies)} requests, median "
        f"{statistics.median(probe.latencies) * 1000:.1f} ms, worst "
        f"{max(probe.latencies) * 1000:.1f} ms"
    )
    return max(probe.latencies), statuses


def test_huge_event_bodies_never_stall_assignments(
    sqlite_url: str, server_factory: ServerFactory
) -> None:
    """The probe's worst wait stays under 100 ms (it was 10.3 s). Measured 9-24 ms on a
    quiet machine; on a 2-core machine shared with other work a single scheduling hiccup can
    exceed 100 ms whatever the server does, so the measurement gets up to three attempts: a
    server that stalls on these bodies (tens of ms per body, or seconds) fails all three."""
    server = server_factory(sqlite_url)
    with server.client(timeout=30.0) as client:
        assert (
            client.post("/v1/experiments", json=similar_items(), headers=ADMIN).status_code == 201
        )
    waits = []
    for _attempt in range(3):
        worst, statuses = _worst_probe_wait(server, _hostile_bodies(512_000))
        assert all(codes <= {413, 0} for codes in statuses.values()), statuses
        waits.append(worst)
        if worst < 0.100:
            break
    assert min(waits) < 0.100, f"assignments waited {[f'{w * 1000:.0f} ms' for w in waits]}"
