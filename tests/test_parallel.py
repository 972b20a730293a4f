"""The parallel run's scheduler (tests/parallel.py), driven as xdist's controller drives it, with fake
workers: realtime files first, the heavy group only once they are all done and never beside one, whole
files as units; and the files it names exist (a renamed file would silently lose its place)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tests.parallel import HEAVY, REALTIME, FileOrGroupScheduling

ROOT = Path(__file__).resolve().parents[1]


def test_every_listed_file_exists() -> None:
    missing = [path for path in (*HEAVY, *REALTIME) if not (ROOT / path).is_file()]
    assert not missing


class FakeWorker:
    def __init__(self, name: str) -> None:
        self.gateway = SimpleNamespace(id=name)
        self.shutting_down = False
        self.queue: list[int] = []  # indexes into the collection, in the order received

    def send_runtest_some(self, indexes: list[int]) -> None:
        self.queue += indexes

    def shutdown(self) -> None:
        self.shutting_down = True


def run(collection: list[str], workers: int) -> list[tuple[str, set[str]]]:
    """Every test run to the end, one at a time (the worker with the oldest pending test goes next);
    for each test: its nodeid and the files the other workers had started and not finished."""
    config: Any = SimpleNamespace(
        getvalue=lambda name: ["popen"] * workers if name == "tx" else None,
        option=SimpleNamespace(loadscopereorder=True),
    )
    sched = FileOrGroupScheduling(config)
    nodes = [FakeWorker(f"gw{i}") for i in range(workers)]
    for node in nodes:
        sched.add_node(node)  # type: ignore[arg-type]
        sched.add_node_collection(node, collection)  # type: ignore[arg-type]
    sched.schedule()
    seen: list[tuple[str, set[str]]] = []
    while sched.has_pending:
        node = next(n for n in nodes if n.queue)  # round robin: each worker in turn runs one test
        nodes.remove(node)
        nodes.append(node)
        index = node.queue.pop(0)
        others = {collection[i].split("::")[0] for n in nodes if n is not node for i in n.queue}
        seen.append((collection[index], others))
        sched.mark_test_complete(node, index)  # type: ignore[arg-type]
    return seen


def test_realtime_first_then_the_heavy_group_alone_whole_files_as_units() -> None:
    quick = [f"tests/core/test_q{i}.py::test_{j}" for i in range(6) for j in range(4)]
    realtime = [f"{path}::test_{j}" for path in REALTIME[:3] for j in range(3)]
    heavy = [f"{path}::test_{j}" for path in HEAVY for j in range(2)]
    collection = [*realtime[:3], *quick[:8], *heavy, *realtime[3:], *quick[8:]]
    seen = run(collection, workers=3)

    assert sorted(n for n, _ in seen) == sorted(collection)  # each test once
    order = [n for n, _ in seen]
    assert max(order.index(t) for t in realtime) < min(order.index(t) for t in heavy)
    for nodeid, others in seen:
        if nodeid in heavy:  # never beside a realtime file or another heavy one
            assert not others & {*REALTIME, *HEAVY} - {nodeid.split("::")[0]}, (nodeid, others)
