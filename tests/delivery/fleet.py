"""A fleet of real Spaces processes — ``spaces web`` and N × ``spaces worker``, the CLI — on PostgreSQL,
against the Telegram Bot API emulator running in the caller's event loop (tests and the benchmark)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tests.fakes.telegram import TelegramEmulator, TgMessage

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


@dataclass
class Fleet:
    url: str
    tg: TelegramEmulator
    logs: Path
    sweep_seconds: float = 2.0
    # The emulator plays Telegram's servers, which do not share our CPU: the fleet runs at a lower priority
    # so that the emulator stamps arrivals as a remote server would, not as a starved process on the same
    # cores (on a 2-core machine running 4 workers, a web process and PostgreSQL). The fleet's own timing —
    # its sleeps, its late wake-ups, its processing — is untouched: among themselves, the processes compete
    # as before.
    nice: int = 5
    procs: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)

    async def spawn(self, role: str, name: str, **env: str) -> None:
        """Start ``spaces <role>`` (its output in ``logs/<name>.log``)."""
        self.logs.mkdir(parents=True, exist_ok=True)
        out = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115, ASYNC230  (a local file, the child keeps it)
        try:
            self.procs[name] = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bots.cli",
                role,
                cwd=self.logs,  # no stray .env file
                env={
                    **os.environ,
                    "PYTHONPATH": str(ROOT),
                    "DATABASE_URL": self.url,
                    "TELEGRAM_BOT_TOKEN": self.tg.token,
                    "TELEGRAM_API_BASE": self.tg.base_url,
                    "SPACES_WORKER_ID": name,
                    "SPACES_SWEEP_SECONDS": str(self.sweep_seconds),
                    "SPACES_LOG_LEVEL": "WARNING",
                    "HOST": "127.0.0.1",
                    "PORT": "0",
                    **env,
                },
                stdin=asyncio.subprocess.DEVNULL,
                preexec_fn=lambda: os.nice(self.nice),
                stdout=out,
                stderr=out,
            )
        finally:
            out.close()

    async def stop(self, grace: float = 15.0) -> dict[str, int | None]:
        """SIGTERM every process, then SIGKILL what is left after ``grace`` seconds. Their exit codes."""
        for p in self.procs.values():
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for name, p in self.procs.items():
            try:
                codes[name] = await asyncio.wait_for(p.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                codes[name] = await p.wait()
        return codes

    def crashed(self) -> list[str]:
        return [name for name, p in self.procs.items() if p.returncode is not None]

    def log_tail(self, lines: int = 30) -> str:
        parts = []
        for name in self.procs:
            path = self.logs / f"{name}.log"
            text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
            parts.append(f"--- {name}\n" + "\n".join(text))
        return "\n".join(parts)

    async def until(self, check: Callable[[], Awaitable[T | None] | T | None], within: float, what: str) -> T:
        """Wait (polling what the emulator received) until ``check()`` is truthy; fail on a crashed process
        or after ``within`` seconds, with the processes' last log lines."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            result = check()
            if asyncio.iscoroutine(result) or isinstance(result, Awaitable):
                result = await result
            if result:
                return result
            if self.crashed():
                raise AssertionError(f"{self.crashed()} exited while waiting for {what}\n{self.log_tail()}")
            if loop.time() > deadline:
                raise AssertionError(f"not within {within:.0f} s: {what}\n{self.log_tail()}")
            await asyncio.sleep(0.1)


@contextlib.contextmanager
def steady_emulator() -> Iterator[None]:
    """The emulator plays a remote server and stamps arrival times: a full collection of this process's
    heap (the emulator's world, every call recorded) can pause it ~100 ms, then stamp the queued requests
    all at once — a burst that was never sent. Freeze what exists (only new objects are scanned) and
    collect the young generations only while the fleet runs."""
    gc.collect()
    gc.freeze()
    thresholds = gc.get_threshold()
    gc.set_threshold(thresholds[0], thresholds[1], 1_000_000)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


_MENTION = re.compile(r"tg://user\?id=(\d+)")


def mentioned(message: TgMessage) -> set[int]:
    """The users a bot message mentions (text links ``tg://user?id=…`` or text_mention entities)."""
    ids: set[int] = set()
    for e in message.entities:
        ids.update(int(x) for x in _MENTION.findall(str(e.get("url", ""))))
        user: Any = e.get("user")
        if isinstance(user, dict) and isinstance(user.get("id"), int):
            ids.add(user["id"])
    return ids
