"""How ``make test`` shares the suite among pytest-xdist workers (``-n N --dist loadgroup``).

The unit of work handed to a worker is:

* a **group** (:data:`GROUPS`): files whose tests must not run at the same moment as each other — the
  multi-process ones (4 real workers each, SIGKILLs, 10,000 sends, limits paced across processes), which
  on a 2-core machine would slow each other down and eat into the margins of their leases and rates;
* otherwise the **file**, as ``--dist loadfile`` does: spread test by test (xdist's ``load``), a module's
  tests would land on several workers and each would build that module's fixtures again — a migrated SQLite
  and PostgreSQL database per module (tests/conftest.py ``store_url``, tests/storage/conftest.py ``db_url``),
  rebuilt again whenever a worker's share of a module switches backend.

Groups go first (the longest unit: started last, it would be the run's tail), then the files in collection
order, which puts the long end-to-end files (tests/bots) before the many quick ones (tests/core, storage).

Why a list of files and not ``@pytest.mark.xdist_group``: pytest-xdist 3.8.0 tells the controller a test's
group by appending ``@<group>`` to its nodeid on the worker, which pytest 9.2's structured node ids no
longer allow — the mark is silently ignored (pytest-dev/pytest-xdist#1386). A ``@<group>`` suffix is still
honoured here for the day it works again.
"""

from __future__ import annotations

from xdist.scheduler import LoadGroupScheduling
from xdist.workermanage import WorkerController

#: group name → the test files in it, relative to the repository root (tests/test_parallel.py checks they exist)
GROUPS: dict[str, tuple[str, ...]] = {
    "processes": (
        "tests/delivery/test_chaos.py",
        "tests/delivery/test_discord_chaos.py",
        "tests/delivery/test_multiworker.py",
        "tests/delivery/test_shared_budget_processes.py",
    ),
}
_GROUP = "group:"
_GROUP_OF = {path: _GROUP + name for name, paths in GROUPS.items() for path in paths}


class FileOrGroupScheduling(LoadGroupScheduling):
    _rank: dict[str, int] | None = None

    def _split_scope(self, nodeid: str) -> str:
        if nodeid.rfind("@") > nodeid.rfind(
            "]"
        ):  # xdist's own group suffix (an "@" in a param id is inside [])
            return _GROUP + nodeid.rsplit("@", 1)[1]
        path = nodeid.split("::", 1)[0]
        return _GROUP_OF.get(path, path)

    def _assign_work_unit(self, node: WorkerController) -> None:
        if self._rank is None:  # the collection is known from the first assignment on
            self._rank = {}
            for nodeid in self.collection or ():
                self._rank.setdefault(self._split_scope(nodeid), len(self._rank))
        rank = self._rank
        first = min(self.workqueue, key=lambda scope: (not scope.startswith(_GROUP), rank.get(scope, 0)))
        self.workqueue.move_to_end(first, last=False)  # the one the base class pops next
        super()._assign_work_unit(node)
