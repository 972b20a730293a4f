"""Shared fixtures. ``core_env`` wires the core services over a persistence backend, a fake platform and a
controllable clock — the cosmic-python "bootstrap with fakes" shape.

The session also captures every log line (this process at DEBUG, and each spawned ``spaces`` process through
``SPACES_LOG_FILE``) and fails if a test secret appears in any of them: tests/logcapture.py.

Every test using ``core_env`` (or ``store_backend``) runs on each backend of tests/backends.py, with test ids
``[memory]``, ``[sqlite]`` and ``[postgres]``: the in-memory fake, and storage/ on a database migrated once
per test module and emptied before each test. PostgreSQL unreachable: that third is skipped loudly (failed
under CI=true), see tests/databases.py.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from bots.runtime.budget import Unlimited
from core.models import Delivery, UserProfile
from core.refs import ChatRef, Platform, UserRef
from core.rules import Actor
from core.services.deliveries import DeliveryEngine, EngineConfig
from core.services.spaces import SpaceService
from tests.backends import BACKEND_IDS, StoreBackend, close_backend, migrated_database, open_backend
from tests.fakes.clock import FakeClock, RecordingWake
from tests.fakes.platform import FakePlatform
from tests.logcapture import SessionLogs

_LOGS = pytest.StashKey[SessionLogs]()
_LOG_FOLDER = "spaces_log_folder"  # in each pytest-xdist worker's workerinput


def pytest_configure(config: pytest.Config) -> None:
    # property tests explore new examples on a developer's machine; under CI they replay the same ones, so a
    # red CI run is about the change, never about a draw (a new counterexample is found and fixed locally)
    settings.register_profile("ci", derandomize=True, print_blob=True)
    if os.environ.get("CI", "").lower() == "true":
        settings.load_profile("ci")
    workerinput = _xdist_workerinput(config)
    if workerinput is None:
        logs = SessionLogs()
    else:  # the controller's folder (pytest_configure_node), which the controller alone scans at the end
        worker = workerinput["workerid"]
        logs = SessionLogs(Path(workerinput[_LOG_FOLDER]), in_process=f"pytest-in-process-{worker}.log")
    logs.start()
    config.stash[_LOGS] = logs


def _xdist_workerinput(config: pytest.Config) -> dict[str, Any] | None:
    """What pytest-xdist's controller gave this worker, or None: a serial run, or the controller itself."""
    return getattr(config, "workerinput", None)


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: unknown when it is not loaded (-p no:xdist)
def pytest_configure_node(node: Any) -> None:
    """The controller hands each worker its log folder before the worker starts."""
    node.workerinput[_LOG_FOLDER] = str(node.config.stash[_LOGS].folder)


@pytest.hookimpl(optionalhook=True, tryfirst=True)  # before xdist's own (registered after this conftest)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup`` (the Makefile's): whole files as units, the wall-clock ones first, the heavy
    multi-process group after them and never beside one (tests/parallel.py)."""
    if config.getvalue("dist") != "loadgroup":
        return None  # another --dist asked for on the command line: xdist's own
    from tests.parallel import FileOrGroupScheduling  # imports xdist: only where it runs

    return FileOrGroupScheduling(config, log)


@pytest.fixture(autouse=True)
def _capture_logs(request: pytest.FixtureRequest) -> Iterator[None]:
    """Keep the session's capture in place around each test (``cli.main`` replaces the root handlers)."""
    logs = request.config.stash[_LOGS]
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    logs.attach()
    yield
    for added in set(root.handlers) - set(handlers) - {logs.handler}:
        added.close()  # e.g. the file handler of a `cli.main` run in this process
    root.handlers[:] = handlers
    root.setLevel(level)
    logs.attach()


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    logs = session.config.stash.get(_LOGS, None)
    if logs is None:
        return
    logs.stop()
    if _xdist_workerinput(session.config) is not None:
        return  # the controller checks the shared folder, every worker's files at once, after the last one
    leaks = logs.leaks()
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if not leaks:
        logs.cleanup()
        return
    lines = [f"{len(leaks)} log line(s) hold a test secret (logs kept in {logs.folder}):"]
    lines += [f"  {leak}" for leak in leaks[:20]]
    if reporter is not None:
        reporter.write("\n")
        reporter.write_sep("=", "SECRET IN THE LOGS", red=True, bold=True)
        for line in lines:
            reporter.write_line(line, red=True)
    else:
        print("\n".join(lines))
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


class StaticLinks:
    def space(self, space_id: str) -> str:
        return f"https://spaces.test/s/{space_id}"


@dataclass
class CoreEnv:
    clock: FakeClock
    db: StoreBackend  # .uow() and .outbox(): the ports the services were given
    platform: FakePlatform
    wake: RecordingWake
    spaces: SpaceService
    engine: DeliveryEngine

    chat = ChatRef(Platform.CONSOLE, "main")
    host = UserRef(Platform.CONSOLE, "host")

    @property
    def backend(self) -> str:
        return self.db.name

    def actor(self, name: str = "host", *, mod: bool = False, locale: str = "en") -> Actor:
        return Actor(UserRef(Platform.CONSOLE, name), is_moderator=mod, locale=locale)

    async def run(self) -> int:
        return await self.engine.deliver_due()

    async def advance(self, delta: timedelta) -> int:
        self.clock.advance(delta)
        return await self.run()

    # ---- backend-neutral inspection, for assertions

    async def deliveries(self) -> list[Delivery]:
        """Every outbox row, of every Space, in the order they were written."""
        return await self.db.all_deliveries()

    async def space_count(self) -> int:
        return await self.db.space_count()

    async def profile(self, user: UserRef) -> UserProfile | None:
        async with self.db.uow() as uow:
            return await uow.users.get(user)


@pytest.fixture(scope="module", params=BACKEND_IDS)
def store_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str | None]]:
    """(backend, url): one migrated database per test module and backend (url None for ``memory``)."""
    with migrated_database(request.param, tmp_path_factory.mktemp("db")) as url:
        yield request.param, url


@pytest.fixture
async def store_backend(store_url: tuple[str, str | None]) -> AsyncIterator[StoreBackend]:
    """The backend for one test, empty."""
    db = await open_backend(*store_url)
    try:
        yield db
    finally:
        await close_backend(db)


@pytest.fixture
def core_env(store_backend: StoreBackend) -> CoreEnv:
    clock = FakeClock()
    platform = FakePlatform()
    wake = RecordingWake()
    spaces = SpaceService(store_backend.uow, clock, wake, default_tz="Europe/Paris")
    engine = DeliveryEngine(
        store_backend.outbox(),
        store_backend.uow,
        platform,
        clock,
        Unlimited(),
        StaticLinks(),
        wake,
        EngineConfig(worker_id="w1"),
        rng=random.Random(7),
    )
    return CoreEnv(clock, store_backend, platform, wake, spaces, engine)
