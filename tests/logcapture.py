"""Every log line the test session produces, checked for secrets at the end (hooks in tests/conftest.py).

Two sources, one folder:

* **this process**: a plain file handler on the root logger at DEBUG — no redaction, so a line passes only if
  the code (and the libraries, at the floors production applies: ``bots.logs.hold_libraries``) never put a
  secret in it;
* **every process a test spawns**: ``SPACES_LOG_FILE`` is set for the session, so each ``spaces …`` process
  (``env={**os.environ, ...}``) writes its own ``spaces-<pid>.log`` here through the production logging set-up.

At the end, any file holding a test secret (:mod:`tests.fakes.secrets`: each contains ``CANARY``) fails the
session, naming the file and quoting the line. The folder is kept when something was found.

Under pytest-xdist every worker writes into the controller's folder (its own ``pytest-in-process-<gw>.log``,
and its processes' ``spaces-<pid>.log``), and only the controller scans it, once every worker has finished:
a worker's exit status never reaches the controller's, and its terminal output is not shown.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bots.logs import KeyValueFormatter, hold_libraries
from tests.fakes import secrets

LOG_FILE_ENV = "SPACES_LOG_FILE"
IN_PROCESS = "pytest-in-process.log"
# Loggers that trace every SQL statement and parameter at INFO/DEBUG: our data, never a configured secret,
# and at DEBUG they would multiply the suite's time. Held at WARNING in the capture.
CHATTY = ("sqlalchemy", "aiosqlite", "asyncio", "asyncpg")
# secrets that tests configured before the canary convention (tests/fakes/secrets.py): checked all the same
OLDER_TEST_SECRETS = ("s3cret-Token_1",)


@dataclass(frozen=True, slots=True)
class Leak:
    file: Path
    line_no: int
    line: str
    secret: str

    def __str__(self) -> str:
        shown = self.line if len(self.line) <= 300 else self.line[:300] + "…"
        return f"{self.file.name}:{self.line_no}: {shown}"


class SessionLogs:
    def __init__(self, folder: Path | None = None, in_process: str = IN_PROCESS) -> None:
        self.folder = folder or Path(tempfile.mkdtemp(prefix="spaces-test-logs-"))
        self.handler = logging.FileHandler(self.folder / in_process, encoding="utf-8")
        self.handler.setFormatter(KeyValueFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
        self.handler.setLevel(logging.DEBUG)
        self._saved_env: str | None = None

    def start(self) -> None:
        self._saved_env = os.environ.get(LOG_FILE_ENV)
        os.environ[LOG_FILE_ENV] = str(self.folder / "spaces-{pid}.log")
        self.attach()

    def attach(self) -> None:
        """(Re)install the capture: a test that configured logging itself may have replaced the handlers."""
        root = logging.getLogger()
        if self.handler not in root.handlers:
            root.addHandler(self.handler)
        root.setLevel(logging.DEBUG)
        hold_libraries()
        for name in CHATTY:
            logging.getLogger(name).setLevel(logging.WARNING)

    def stop(self) -> None:
        logging.getLogger().removeHandler(self.handler)
        self.handler.close()
        if self._saved_env is None:
            os.environ.pop(LOG_FILE_ENV, None)
        else:
            os.environ[LOG_FILE_ENV] = self._saved_env

    def files(self) -> list[Path]:
        return sorted(p for p in self.folder.iterdir() if p.is_file())

    def leaks(self, extra_secrets: Iterable[str] = ()) -> list[Leak]:
        return scan(self.files(), (secrets.CANARY, *secrets.ALL, *OLDER_TEST_SECRETS, *extra_secrets))

    def cleanup(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def scan(files: Iterable[Path], needles: Iterable[str]) -> list[Leak]:
    """Every line of ``files`` containing one of ``needles`` (blank needles ignored)."""
    wanted = [n for n in dict.fromkeys(needles) if n]
    found: list[Leak] = []
    for path in files:
        with path.open(encoding="utf-8", errors="replace") as f:
            for no, line in enumerate(f, 1):
                hit = next((n for n in wanted if n in line), None)
                if hit is not None:
                    found.append(Leak(path, no, line.rstrip("\n"), hit))
    return found
