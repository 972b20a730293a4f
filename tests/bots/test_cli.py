from __future__ import annotations

import io
import logging
import socket
from pathlib import Path

import pytest

from bots import cli
from config.settings import Settings
from storage import migrate


@pytest.mark.parametrize(
    ("argv", "command", "no_console"),
    [
        ([], "run", False),
        (["run"], "run", False),
        (["run", "--no-console"], "run", True),
        (["web"], "web", None),
        (["worker"], "worker", None),
        (["migrate"], "migrate", None),
        (["doctor"], "doctor", None),
    ],
)
def test_parse_args(argv: list[str], command: str, no_console: bool | None) -> None:
    args = cli.parse_args(argv)
    assert args.command == command
    assert getattr(args, "no_console", None) == no_console


def test_unknown_command_is_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.parse_args(["serve"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> None:
    """main() reads the process environment and ./.env: give it a clean directory and exactly ``env``."""
    monkeypatch.chdir(tmp_path)
    for name in list(__import__("os").environ):
        if name == "SPACES_LOG_FILE":  # the session's log capture: every process writes its lines there
            continue
        if name.startswith(("SPACES_", "DISCORD_", "TELEGRAM_", "SLACK_")) or name in (
            "DATABASE_URL",
            "PORT",
            "HOST",
        ):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def test_invalid_configuration_exits_2_with_plain_words(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    isolated_env(monkeypatch, tmp_path, PORT="http", SPACES_DEFAULT_TZ="Nowhere/Land")
    assert cli.main(["worker"]) == 2
    err = capsys.readouterr().err
    assert "The configuration is not valid" in err and "PORT" in err and "Nowhere/Land" in err


def test_migrate_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    isolated_env(monkeypatch, tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'm.db'}")
    assert cli.main(["migrate"]) == 0
    assert f"empty → {migrate.head()}" in capsys.readouterr().out


def test_env_file_is_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    isolated_env(monkeypatch, tmp_path)
    (tmp_path / ".env").write_text(
        f"DATABASE_URL=sqlite:///{tmp_path / 'from-env-file.db'}\nTELEGRAM_BOT_TOKEN=\n"
    )
    assert cli.main(["migrate"]) == 0
    assert (tmp_path / "from-env-file.db").exists()


async def test_sqlite_is_migrated_before_serving(tmp_path: Path) -> None:
    settings = Settings.from_env({"DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}"})
    assert await cli.prepare_database(settings) is None
    assert await migrate.current(settings.database_url) == migrate.head()
    assert await cli.prepare_database(settings) is None  # and again: nothing to do


async def test_postgres_behind_head_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    async def current(url: str) -> str | None:
        assert url.startswith("postgres://")
        return None

    async def upgrade(url: str, revision: str = "head") -> None:
        raise AssertionError("production schemas are migrated by the release phase, not by `spaces run`")

    monkeypatch.setattr(migrate, "current", current)
    monkeypatch.setattr(migrate, "upgrade", upgrade)
    settings = Settings.from_env({"DATABASE_URL": "postgres://u:p@db.example/spaces"})
    problem = await cli.prepare_database(settings)
    assert problem is not None
    assert "spaces migrate" in problem and migrate.head() in problem


async def test_postgres_at_head_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    async def current(url: str) -> str | None:
        return migrate.head()

    monkeypatch.setattr(migrate, "current", current)
    assert await cli.prepare_database(Settings.from_env({"DATABASE_URL": "postgres://db.example/s"})) is None


def test_log_lines_carry_the_extra_fields() -> None:
    stream = io.StringIO()
    cli.configure_logging("INFO", stream)
    try:
        logging.getLogger("spaces.test").info(
            "scheduled", extra={"space_id": "abcd234567", "note": "two words"}
        )
    finally:
        logging.getLogger().handlers.clear()
    line = stream.getvalue()
    assert "INFO" in line and "scheduled" in line
    assert "space_id=abcd234567" in line and "note='two words'" in line


def test_a_port_in_use_is_one_line_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        isolated_env(monkeypatch, tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'p.db'}", PORT=str(port))
        assert cli.main(["web"]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"Port {port} on 127.0.0.1 is already in use (another `spaces` process?): stop it, "
        "or set PORT to a free port.\n"
    )
    assert not (tmp_path / "p.db").exists()  # stopped before touching anything


def test_the_metrics_port_is_checked_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        isolated_env(monkeypatch, tmp_path, PORT="0", SPACES_METRICS_PORT=str(port))
        assert cli.main(["run", "--no-console"]) == 1
    assert "set SPACES_METRICS_PORT to a free port" in capsys.readouterr().err
