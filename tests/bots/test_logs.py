"""No secret in any log line: the library floors, the redacting filter, and real ``spaces`` processes.

The session-wide check (tests/logcapture.py) greps everything the suite logged; these tests pin each mechanism
on its own, including the worst cases: a secret inside an exception's text and its traceback, and python-
telegram-bot's own error for a refused token, which repeats the token.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from bots import logs
from bots.logs import REDACTED, Redactor, configure_logging, settings_secrets
from config.settings import Settings
from tests.fakes import secrets
from tests.fakes.telegram import TelegramEmulator
from tests.logcapture import scan

ROOT = Path(__file__).resolve().parents[2]


def record(msg: str, *args: object, exc: BaseException | None = None, **extra: object) -> logging.LogRecord:
    rec = logging.makeLogRecord({"name": "t", "levelno": logging.ERROR, "msg": msg, "args": args, **extra})
    if exc is not None:
        try:
            raise exc
        except BaseException:
            rec.exc_info = sys.exc_info()
    return rec


def test_configured_secrets_are_replaced_everywhere_in_a_record() -> None:
    r = Redactor([secrets.TELEGRAM_WEBHOOK_SECRET, secrets.METRICS_TOKEN])
    rec = record(
        "webhook secret %s refused",
        secrets.TELEGRAM_WEBHOOK_SECRET,
        exc=ValueError(f"bad token {secrets.METRICS_TOKEN}"),
        header=secrets.TELEGRAM_WEBHOOK_SECRET,
        attempts=3,
    )
    assert r.filter(rec) is True  # redacts, never drops
    line = logs.KeyValueFormatter(logs.FORMAT).format(rec)
    assert secrets.CANARY not in line
    assert f"webhook secret {REDACTED} refused" in line
    assert f"ValueError: bad token {REDACTED}" in line and "Traceback" in line  # the traceback is kept
    assert f"header={REDACTED}" in line and "attempts=3" in line


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (  # httpx's request line, for any bot (not only the configured one)
            "HTTP Request: POST https://api.telegram.org/bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/getMe",
            f"HTTP Request: POST https://api.telegram.org/bot{REDACTED}/getMe",
        ),
        ("token xoxb-17-42-abcdefABCDEF0123 refused", f"token {REDACTED} refused"),
        ("app token xapp-1-A0-123-abcdef", f"app token {REDACTED}"),
        (
            "cannot connect to postgresql://spaces:s3cr%40t@db:5432/x",
            f"postgresql://spaces:{REDACTED}@db:5432/x",
        ),
        (
            "headers {'Authorization': 'Bearer abc.def-123456'}",
            f"headers {{'Authorization': 'Bearer {REDACTED}'}}",
        ),
        ("Authorization: Bot MTA0.abcdef.123456789", f"Authorization: Bot {REDACTED}"),
        ("using Bearer 0123456789abcdef", f"using Bearer {REDACTED}"),
        ("Bot SpacesTestBot started in 12:30 at http://127.0.0.1:8080/x", None),  # nothing secret: unchanged
    ],
)
def test_credential_shapes_are_replaced_even_when_not_configured(text: str, shown: str | None) -> None:
    out = Redactor().redact(text)
    if shown is None:
        assert out == text
    else:
        assert shown in out, out


def test_short_configured_values_are_not_replaced_one_by_one() -> None:
    # "abc" would blank every word containing it; the doctor warns about such secrets instead
    assert Redactor(["abc", ""]).redact("abcdef abc") == "abcdef abc"


def test_settings_secrets_lists_every_secret_and_the_database_password() -> None:
    s = Settings.from_env(
        {
            "DATABASE_URL": f"postgresql://spaces:{secrets.DB_PASSWORD}@db.example/spaces",
            "TELEGRAM_BOT_TOKEN": secrets.TELEGRAM_TOKEN,
            "TELEGRAM_WEBHOOK_SECRET": secrets.TELEGRAM_WEBHOOK_SECRET,
            "SLACK_BOT_TOKEN": secrets.SLACK_BOT_TOKEN,
            "SLACK_SIGNING_SECRET": secrets.SLACK_SIGNING_SECRET,
            "SLACK_APP_TOKEN": secrets.SLACK_APP_TOKEN,
            "DISCORD_BOT_TOKEN": secrets.DISCORD_BOT_TOKEN,
            "SPACES_METRICS_TOKEN": secrets.METRICS_TOKEN,
        }
    )
    assert set(settings_secrets(s)) == set(secrets.ALL)


def test_libraries_stay_above_their_floor_even_at_debug(tmp_path: Path) -> None:
    # configure_logging replaces the root handlers: tests/conftest.py puts the session's back afterwards
    stream = io.StringIO()
    configure_logging(
        "DEBUG", stream, secrets=[secrets.TELEGRAM_TOKEN], log_file=str(tmp_path / "x-{pid}.log")
    )
    url = f"https://api.telegram.org/bot{secrets.TELEGRAM_TOKEN}"
    logging.getLogger("httpx").info('HTTP Request: POST %s/getMe "HTTP/1.1 200 OK"', url)
    logging.getLogger("telegram.Bot").debug("Set Bot API URL: %s", url)
    logging.getLogger("telegram.ext.Application").info("Application started")
    logging.getLogger("bots.test").debug("ours at debug: %s", url)
    for handler in logging.getLogger().handlers:
        handler.flush()
    printed = stream.getvalue()
    assert "HTTP Request" not in printed and "Set Bot API URL" not in printed  # held at the source
    assert "Application started" in printed
    assert f"ours at debug: https://api.telegram.org/bot{REDACTED}" in printed  # and redacted on the way out
    written = (tmp_path / f"x-{os.getpid()}.log").read_text()
    assert written == printed and secrets.CANARY not in written


def test_scan_finds_a_secret_in_any_file(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_text("fine\nalso fine\n")
    (tmp_path / "b.log").write_text(f"x\nGET /bot{secrets.TELEGRAM_TOKEN}/getMe\n")
    (leak,) = scan(sorted(tmp_path.iterdir()), [secrets.CANARY])
    assert (leak.file.name, leak.line_no) == ("b.log", 2)


# ------------------------------------------------------------------------------------ real processes


async def _spawn(
    tmp_path: Path, command: str, *, stderr: Any = asyncio.subprocess.PIPE, **env: str
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bots.cli",
        command,
        cwd=tmp_path,  # no .env from the repository
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'spaces.db'}",
            "PORT": "0",
            "SPACES_PUBLIC_URL": "https://spaces.example.org",
            "SPACES_LOG_FILE": str(tmp_path / "spaces-{pid}.log"),
            **env,
        },
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
    )


async def _read_until(stream: asyncio.StreamReader, needle: str, within: float = 30.0) -> str:
    seen = ""
    async with asyncio.timeout(within):
        while needle not in seen:
            line = await stream.readline()
            if not line:
                raise AssertionError(f"stream ended before {needle!r}:\n{seen}")
            seen += line.decode()
    return seen


async def test_a_process_at_debug_logs_no_token(tmp_path: Path) -> None:
    # `run`: the web role receives the update, the worker role sends the answer (answers are outbox rows)
    async with TelegramEmulator() as tg:
        # at DEBUG the process writes far more than a pipe holds: a file, or it would block on stderr
        stderr_file = (tmp_path / "stderr.txt").open("wb")
        proc = await _spawn(
            tmp_path,
            "run",
            stderr=stderr_file,
            TELEGRAM_BOT_TOKEN=tg.token,
            TELEGRAM_API_BASE=tg.base_url,
            SPACES_LOG_LEVEL="DEBUG",
        )
        try:
            assert proc.stdout is not None
            await _read_until(proc.stdout, "platforms")  # the banner: started
            user = tg.create_user("Ada")
            await tg.user_starts_bot(user)
            await tg.wait_for_message(user.id, within=20)
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)
            stderr_file.close()
    err = (tmp_path / "stderr.txt").read_bytes()
    assert proc.returncode == 0, err.decode()[-3000:]
    written = (tmp_path / f"spaces-{proc.pid}.log").read_text()
    assert "DEBUG" in written and "started" in written  # it did log, at DEBUG
    assert tg.token not in written and tg.token not in err.decode()
    assert len(tg.calls("getUpdates")) >= 1  # and talked to the Bot API all along


async def test_a_refused_token_is_reported_without_the_token(tmp_path: Path) -> None:
    # python-telegram-bot's own error repeats it: "The token `<token>` was rejected by the server."
    async with TelegramEmulator(token="7000000002:AAE-some-other-bot-0123456789abcdefgh") as tg:
        proc = await _spawn(
            tmp_path, "web", TELEGRAM_BOT_TOKEN=secrets.TELEGRAM_TOKEN, TELEGRAM_API_BASE=tg.base_url
        )
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        tg.take_violations()  # the refused getMe: on purpose
    text = err.decode()
    assert proc.returncode == 1
    assert f"Cannot start: The token `{REDACTED}` was rejected by the server." in text
    assert secrets.CANARY not in text
    assert secrets.CANARY not in (tmp_path / f"spaces-{proc.pid}.log").read_text()
