"""Chaos: 4 `spaces worker` processes on PostgreSQL fan a live notice out to a few hundred Telegram users
while a random worker is SIGKILLed every 2–5 s and restarted, the emulator answers 2 % of the sends with
HTTP 500 (not delivered) and cuts 1 % of the connections after delivering the message.

Counted at the emulator, per recipient: nobody is lost, and the copies beyond the first are no more than
what a crash may legitimately repeat on a platform without idempotency keys — the sends in flight of each
killed worker, plus one per connection cut after delivery. The bigger run (2,000 subscribers, chaos vs
clean, the T-0 reminder during the fan-out) is the benchmark: ``python -m bench --only fanout``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.databases import new_database
from tests.delivery.harness import SENDS_IN_FLIGHT_PER_WORKER, Chaos, fan_out

SUBSCRIBERS = 400


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    with new_database("postgres", tmp_path) as url:
        yield url


@pytest.mark.slow
async def test_a_fan_out_survives_killed_workers_and_a_flaky_platform(pg_url: str, tmp_path: Path) -> None:
    logs = tmp_path / "workers"
    logs.mkdir()
    r = await fan_out(pg_url, logs, subscribers=SUBSCRIBERS, workers=4, chaos=Chaos(seed=10), within=240)
    print(
        f"\nchaos: {r.subscribers} subscribers, 4 workers, {r.kills} SIGKILLs, "
        f"{r.errors_injected} × HTTP 500, {r.resets_injected} connections cut after delivery: "
        f"lost {r.lost}, duplicates {r.duplicates} (bound {r.kills} kills × {SENDS_IN_FLIGHT_PER_WORKER} "
        f"in flight + {r.resets_injected} resets = {r.duplicate_bound}), fan-out {r.seconds:.1f} s, "
        f"{r.count_429} × 429, {r.marked_delayed} marked delayed"
    )
    assert r.kills >= 3, "the chaos did not happen: the fan-out ended too soon"
    assert r.lost == 0
    assert r.duplicates <= r.duplicate_bound
