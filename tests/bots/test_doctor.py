from __future__ import annotations

import io
from pathlib import Path

import pytest

from bots import doctor
from bots.cli import prepare_database
from bots.doctor import Check, Status, check_environment, check_platforms, check_public_url, diagnose
from config.settings import Settings

TELEGRAM_TOKEN = "123456789:AAE" + "x" * 32
DISCORD_KEY = "ab" * 32


def settings(**env: str) -> Settings:
    return Settings.from_env(env)


def by_name(checks: list[Check], name: str) -> list[Check]:
    return [c for c in checks if c.name == name]


async def test_good_configuration_passes(tmp_path: Path) -> None:
    s = settings(
        DATABASE_URL=f"sqlite:///{tmp_path / 'ok.db'}",
        TELEGRAM_BOT_TOKEN=TELEGRAM_TOKEN,
        SLACK_BOT_TOKEN="xoxb-1-2-abc",
        SLACK_SIGNING_SECRET="0123456789abcdef0123456789abcdef",
        SLACK_APP_TOKEN="xapp-1-A-1-abc",
        DISCORD_BOT_TOKEN="MTA.Gx.abc",
        DISCORD_PUBLIC_KEY=DISCORD_KEY,
        DISCORD_APPLICATION_ID="123456789012345678",
    )
    await prepare_database(s)
    checks = await diagnose(s)
    assert [c for c in checks if c.status is not Status.OK] == []
    names = [c.name for c in checks]
    assert names == [
        "configuration",
        "database",
        "ffmpeg",
        "opus",
        "public url",
        "discord",
        "telegram",
        "slack",
    ]
    out = io.StringIO()
    assert await doctor.run_doctor(s, out=out) == 0
    assert out.getvalue().rstrip().endswith("All good.")


async def test_unmigrated_sqlite_is_a_warning_and_unreachable_db_a_failure(tmp_path: Path) -> None:
    fresh = await doctor.check_database(settings(DATABASE_URL=f"sqlite:///{tmp_path / 'new.db'}"))
    assert fresh.status is Status.WARN and "spaces migrate" in fresh.message
    gone = await doctor.check_database(
        settings(DATABASE_URL=f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}")
    )
    assert gone.status is Status.FAIL and "does not exist" in gone.message and "DATABASE_URL" in gone.message


async def test_missing_ffmpeg(tmp_path: Path) -> None:
    (check,) = await doctor.check_ffmpeg(settings(SPACES_FFMPEG=str(tmp_path / "ffmpeg")))
    assert check.failed and "SPACES_FFMPEG" in check.message


async def test_ffmpeg_without_libopus(tmp_path: Path) -> None:
    fake = tmp_path / "ffmpeg"
    fake.write_text('#!/bin/sh\necho "ffmpeg version 0.0-fake"\n')
    fake.chmod(0o755)
    checks = await doctor.check_ffmpeg(settings(SPACES_FFMPEG=str(fake)))
    assert [c.status for c in checks] == [Status.OK, Status.FAIL]
    assert "libopus" in checks[1].message


@pytest.mark.parametrize(
    ("env", "platform", "words"),
    [
        ({"TELEGRAM_BOT_TOKEN": "not-a-token"}, "telegram", "@BotFather"),
        (
            {"TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN, "TELEGRAM_MODE": "webhook"},
            "telegram",
            "TELEGRAM_WEBHOOK_SECRET",
        ),
        (
            {
                "TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN,
                "TELEGRAM_MODE": "webhook",
                "TELEGRAM_WEBHOOK_SECRET": "no spaces!",
            },
            "telegram",
            "1–256 characters",
        ),
        (
            {
                "TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN,
                "TELEGRAM_MODE": "webhook",
                "TELEGRAM_WEBHOOK_SECRET": "x" * 257,
            },
            "telegram",
            "1–256 characters",
        ),
        ({"TELEGRAM_WEBHOOK_SECRET": "abc"}, "telegram", "TELEGRAM_BOT_TOKEN is not"),
        ({"SLACK_BOT_TOKEN": "xoxp-user-token", "SLACK_SIGNING_SECRET": "s"}, "slack", "xoxb-"),
        ({"SLACK_BOT_TOKEN": "xoxb-1"}, "slack", "SLACK_SIGNING_SECRET is missing"),
        (
            {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "SLACK_APP_TOKEN": "xoxb-2"},
            "slack",
            "xapp-",
        ),
        ({"SLACK_SIGNING_SECRET": "s"}, "slack", "SLACK_BOT_TOKEN is not"),
        ({"DISCORD_BOT_TOKEN": "Bot MTA.Gx.abc"}, "discord", "'Bot ' prefix"),
        ({"DISCORD_BOT_TOKEN": "MTA.Gx.abc", "DISCORD_PUBLIC_KEY": "xyz"}, "discord", "64 hexadecimal"),
        ({"DISCORD_BOT_TOKEN": "MTA.Gx.abc", "DISCORD_APPLICATION_ID": "my-app"}, "discord", "numeric"),
        ({"DISCORD_PUBLIC_KEY": DISCORD_KEY}, "discord", "DISCORD_BOT_TOKEN is not"),
    ],
)
def test_platform_problems_are_explained(env: dict[str, str], platform: str, words: str) -> None:
    checks = by_name(check_platforms(settings(**env)), platform)
    assert any(c.failed and words in c.message for c in checks), checks


def test_no_platform_is_a_warning() -> None:
    (check,) = check_platforms(settings())
    assert check.status is Status.WARN and "TELEGRAM_BOT_TOKEN" in check.message


def test_secrets_never_appear_in_messages() -> None:
    checks = check_platforms(settings(TELEGRAM_BOT_TOKEN="hunter2-secret", SLACK_BOT_TOKEN="xoxp-hunter3"))
    assert not any("hunter" in c.message for c in checks)


@pytest.mark.parametrize(
    ("env", "status"),
    [
        ({}, Status.OK),
        ({"SPACES_PUBLIC_URL": "spaces.example.org"}, Status.FAIL),
        ({"SPACES_PUBLIC_URL": "ftp://spaces.example.org"}, Status.FAIL),
        (
            {"TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN, "TELEGRAM_MODE": "webhook"},
            Status.WARN,
        ),  # localhost webhook
        (
            {
                "TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN,
                "TELEGRAM_MODE": "webhook",
                "SPACES_PUBLIC_URL": "https://spaces.example.org",
            },
            Status.OK,
        ),
        ({"TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN}, Status.OK),  # polling needs no public URL
    ],
)
def test_public_url(env: dict[str, str], status: Status) -> None:
    (check,) = check_public_url(settings(**env))
    assert check.status is status, check


def test_invalid_environment_becomes_failed_checks() -> None:
    s, checks = check_environment({"PORT": "-1", "SPACES_DEFAULT_LOCALE": "de"})
    assert s is None
    assert all(c.failed and c.name == "configuration" for c in checks)
    assert any("PORT" in c.message for c in checks) and any("de" in c.message for c in checks)


async def test_exit_code_is_1_on_any_failure(tmp_path: Path) -> None:
    s = settings(DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}", SLACK_BOT_TOKEN="nope")
    await prepare_database(s)
    out = io.StringIO()
    assert await doctor.run_doctor(s, out=out) == 1
    text = out.getvalue()
    assert "✗ slack" in text and "problems to fix" in text


def test_format_checks() -> None:
    lines = doctor.format_checks([Check("a", Status.OK, "fine"), Check("bb", Status.WARN, "hmm")])
    assert lines == ["✓ a   fine", "! bb  hmm", "All good (1 warning)."]
