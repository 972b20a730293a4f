"""How ``make test`` shares the suite among pytest-xdist workers (``-n N --dist loadgroup``).

xdist's own ``loadgroup`` keeps each ``@pytest.mark.xdist_group`` together on one worker and spreads every
other test one by one. Spread one by one, a module's tests land on several workers, and each worker then
builds that module's fixtures again: a migrated SQLite and PostgreSQL database per module (tests/conftest.py
``store_url``, tests/storage/conftest.py ``db_url``) would be made up to N times, and torn down and made
again whenever a worker's share of a module switches backend. So here the unit of work is:

* a **group** (``xdist_group``): the tests that must not run at the same moment as each other — the
  multi-process ones (real ``spaces`` processes and SIGKILLs), whose CPU use would slow each other down on
  a 2-core machine;
* otherwise the **file**, as ``--dist loadfile`` does: a module's fixtures are built once, as in a serial run.

The groups are handed out first, being the longest units: a long one started last would be the run's tail.
"""

from __future__ import annotations

from xdist.scheduler import LoadGroupScheduling
from xdist.workermanage import WorkerController

GROUP = "group:"


class FileOrGroupScheduling(LoadGroupScheduling):
    def _split_scope(self, nodeid: str) -> str:
        # the same test of the group's nodeid as LoadGroupScheduling (xdist appends "@<group>"; an "@" inside
        # a parametrize id comes before the closing "]")
        if nodeid.rfind("@") > nodeid.rfind("]"):
            return GROUP + nodeid.rsplit("@", 1)[1]
        return nodeid.split("::", 1)[0]

    def _assign_work_unit(self, node: WorkerController) -> None:
        group = next((scope for scope in self.workqueue if scope.startswith(GROUP)), None)
        if group is not None:
            self.workqueue.move_to_end(group, last=False)  # the next one popped
        super()._assign_work_unit(node)
