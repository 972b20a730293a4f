"""``spaces`` — the command line: run | web | worker | migrate | doctor.

    spaces              same as `spaces run`: web + worker (+ the console on a terminal), SQLite by default
    spaces web          the web app only (Procfile `web:`)
    spaces worker       the delivery engine only (Procfile `worker:`)
    spaces migrate      alembic upgrade head on DATABASE_URL (Procfile `release:`)
    spaces doctor       check the configuration, the database, ffmpeg and each platform's settings

run/web/worker migrate an embedded SQLite database themselves (it must just work); on PostgreSQL they refuse
to start on a schema that is behind — migrations there are a deliberate release step.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import TextIO

from bots.logs import KeyValueFormatter, Redactor, configure_logging, settings_secrets
from config.settings import Settings, explain

log = logging.getLogger("bots.cli")

LOG_FILE_ENV = "SPACES_LOG_FILE"
__all__ = ["KeyValueFormatter", "configure_logging", "main", "prepare_database"]

COMMANDS = ("run", "web", "worker", "migrate", "doctor")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spaces",
        description="Scheduled live audio rooms for Discord, Telegram and Slack. Configured by environment "
        "variables (see config/example.env; a .env file in the working directory is read too).",
    )
    sub = parser.add_subparsers(dest="command", metavar="{run,web,worker,migrate,doctor}")
    run = sub.add_parser("run", help="web + worker in one process, plus the console on a terminal (default)")
    run.add_argument("--no-console", action="store_true", help="never start the console, even on a terminal")
    sub.add_parser("web", help="serve the web app only (webhooks, pages, /healthz, /metrics)")
    sub.add_parser("worker", help="deliver reminders and notices only")
    sub.add_parser("migrate", help="upgrade the database schema to this version (alembic upgrade head)")
    sub.add_parser("doctor", help="check configuration, database, ffmpeg and platform settings")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    args = make_parser().parse_args(argv)
    if args.command is None:
        args.command = "run"
        args.no_console = False
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "doctor":
        from bots.doctor import check_environment, run_doctor  # only the doctor needs it

        checked, _ = check_environment()
        start_logging(checked, "WARNING")
        return asyncio.run(run_doctor(checked))  # reports an invalid configuration itself, as failed checks
    try:
        settings = Settings.from_env()
    except Exception as e:  # pydantic.ValidationError: say which variable, in plain words
        clean = start_logging(None, "WARNING").redact
        _err("The configuration is not valid:")
        for line in explain(e):
            _err(f"  - {clean(line)}")
        _err("See config/example.env for every variable.")
        return 2
    redactor = start_logging(settings, settings.log_level)
    if args.command == "migrate":
        return asyncio.run(_migrate(settings))
    console = args.command == "run" and not getattr(args, "no_console", False) and _is_tty(sys.stdin)
    return asyncio.run(_serve(settings, args.command, console, redactor))


def start_logging(settings: Settings | None, level: str) -> Redactor:
    """The process's logging: ``level`` to stderr (and to SPACES_LOG_FILE), every secret of ``settings``
    redacted. Without valid settings, SPACES_LOG_FILE is still read from the environment."""
    if settings is None:
        return configure_logging(level, log_file=os.environ.get(LOG_FILE_ENV) or None)
    return configure_logging(level, secrets=settings_secrets(settings), log_file=settings.log_file)


# ---------------------------------------------------------------------------------------------- commands


async def _migrate(settings: Settings) -> int:
    from bots.app import display_url
    from storage import migrate  # keep `spaces --help` fast

    before = await migrate.current(settings.database_url)
    await migrate.upgrade(settings.database_url)
    after = await migrate.current(settings.database_url)
    print(f"database {display_url(settings.database_url)}: {before or 'empty'} → {after}")
    return 0


async def prepare_database(settings: Settings) -> str | None:
    """Migrate SQLite; on PostgreSQL only check. Returns a message for the user when we must not start."""
    from storage import migrate

    if settings.is_sqlite:
        await migrate.upgrade(settings.database_url)
        return None
    current, head = await migrate.current(settings.database_url), migrate.head()
    if current == head:
        return None
    return (
        f"The database schema is at {current or 'nothing (empty database)'}, this version needs {head}.\n"
        "Run `spaces migrate` first (on Heroku the Procfile's release phase does it on every deploy)."
    )


async def _serve(settings: Settings, command: str, console: bool, redactor: Redactor | None = None) -> int:
    from bots.app import Role, build, display_url
    from bots.console.repl import ConsoleIO
    from bots.doctor import listen_addresses, port_problem

    clean = redactor.redact if redactor is not None else Redactor(settings_secrets(settings)).redact
    role = Role(command)
    if role.serves_web:
        # before anything starts (Telegram polling would already be taking updates): one line, no traceback
        for host, port, name in listen_addresses(settings):
            hint = port_problem(host, port, name)
            if hint is not None:
                _err(hint)
                return 1
    try:
        problem = await prepare_database(settings)
    except Exception as e:
        _err(clean(f"Cannot open the database {display_url(settings.database_url)}: {e}"))
        _err("Check DATABASE_URL, or run `spaces doctor`.")
        return 1
    if problem is not None:
        _err(problem)
        return 1
    io = ConsoleIO(sys.stdin, sys.stdout) if console else None
    service = await build(settings, role=role, console_io=io)
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, service.request_stop)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # not the main thread, or Windows
            pass
    try:
        try:
            await service.start()
        except Exception as e:  # a port taken meanwhile, the database … (a platform that fails is retried)
            in_use = _in_use_hint(e, settings)
            if in_use is not None:
                _err(in_use)
                return 1
            log.error("start-up failed", exc_info=not isinstance(e, OSError))
            _err(clean(f"Cannot start: {e}"))  # a refused token's error repeats the token: never print it
            return 1
        # Everything built at start-up lives as long as the process: keep it out of the collector's full
        # passes. A full collection stops every thread, the voice sender's too — measured at up to 150 ms
        # of silence in a voice channel during a big fan-out (bench/audio.py), 2–16 ms once frozen.
        gc.freeze()
        await service.wait()
        log.info("shutting down")
    finally:
        await service.stop()
        for sig in installed:
            loop.remove_signal_handler(sig)
    return 0


def _in_use_hint(e: BaseException, settings: Settings) -> str | None:
    """A listener that failed to bind after the pre-flight check (taken meanwhile): the same one-line hint."""
    from bots.doctor import bind_hint, listen_addresses

    if not isinstance(e, OSError):
        return None
    for host, port, name in listen_addresses(settings):
        if str(port) in str(e):
            return bind_hint(e, host, port, name)
    return bind_hint(e, settings.host, settings.port, "PORT")


# ---------------------------------------------------------------------------------------------- helpers


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _err(text: str) -> None:
    print(text, file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
