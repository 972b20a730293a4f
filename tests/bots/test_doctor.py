from __future__ import annotations

import asyncio
import io
import socket
from pathlib import Path

import pytest

from bots import doctor
from bots.cli import prepare_database
from bots.doctor import Check, Status, check_environment, check_platforms, check_public_url, diagnose
from config.settings import Settings
from tests.fakes import secrets
from tests.fakes.telegram import TelegramEmulator

TELEGRAM_TOKEN = secrets.TELEGRAM_TOKEN
DISCORD_KEY = "ab" * 32


def settings(**env: str) -> Settings:
    return Settings.from_env(env)


def by_name(checks: list[Check], name: str) -> list[Check]:
    return [c for c in checks if c.name == name]


async def test_good_configuration_passes(tmp_path: Path) -> None:
    from tests.fakes.discord import DiscordEmulator
    from tests.fakes.slack import SlackEmulator

    async with TelegramEmulator() as tg, DiscordEmulator() as dc, SlackEmulator() as sl:
        sl.create_workspace("Acme", token=secrets.SLACK_BOT_TOKEN)
        s = settings(
            SLACK_API_BASE=sl.api_base,
            DATABASE_URL=f"sqlite:///{tmp_path / 'ok.db'}",
            PORT="0",
            SPACES_PUBLIC_URL="https://spaces.example.org",
            TELEGRAM_BOT_TOKEN=tg.token,
            TELEGRAM_API_BASE=tg.base_url,
            SLACK_BOT_TOKEN=secrets.SLACK_BOT_TOKEN,
            SLACK_SIGNING_SECRET=secrets.SLACK_SIGNING_SECRET,
            SLACK_APP_TOKEN=secrets.SLACK_APP_TOKEN,
            DISCORD_BOT_TOKEN=dc.token,
            DISCORD_PUBLIC_KEY=dc.public_key,
            DISCORD_APPLICATION_ID=str(dc.application_id),
            DISCORD_API_BASE=dc.base_url,
            SPACES_METRICS_TOKEN=secrets.METRICS_TOKEN,
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
            "ports",
            "metrics",
            "discord",
            "telegram",
            "slack",
        ]
        (telegram,) = by_name(checks, "telegram")
        assert telegram.message == "Telegram accepts the token: this is @SpacesTestBot (polling mode)"
        assert [c.method for c in tg.calls()] == ["getMe"]  # checked for real, once
        out = io.StringIO()
        assert await doctor.run_doctor(s, out=out) == 0
        assert out.getvalue().rstrip().endswith("All good.")
        assert not any(secret in out.getvalue() for secret in secrets.ALL)


async def test_a_refused_token_fails_without_showing_it(tmp_path: Path) -> None:
    async with TelegramEmulator(token="7000000002:AAE-some-other-bot-0123456789abcdefgh") as tg:
        s = settings(
            DATABASE_URL=f"sqlite:///{tmp_path / 'ok.db'}",
            TELEGRAM_BOT_TOKEN=TELEGRAM_TOKEN,  # not the emulator's bot: refused, like a revoked token
            TELEGRAM_API_BASE=tg.base_url,
        )
        (check,) = by_name(await diagnose(s, database=False, ffmpeg=False), "telegram")
        assert [v.kind for v in tg.take_violations()] == ["token"]  # refused on purpose
    assert check.failed
    assert check.message.startswith("Telegram refused TELEGRAM_BOT_TOKEN (401")
    assert "@BotFather" in check.message and TELEGRAM_TOKEN not in check.message


async def test_an_unreachable_api_is_a_warning_within_the_timeout(tmp_path: Path) -> None:
    silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)  # accepts, never answers
    port = silent.sockets[0].getsockname()[1]
    try:
        s = settings(TELEGRAM_BOT_TOKEN=TELEGRAM_TOKEN, TELEGRAM_API_BASE=f"http://127.0.0.1:{port}/bot")
        check = await doctor.check_telegram_api(s, within=0.3)
        assert check.status is Status.WARN and "did not answer within 0.3 s" in check.message
        closed = settings(TELEGRAM_BOT_TOKEN=TELEGRAM_TOKEN, TELEGRAM_API_BASE="http://127.0.0.1:1/bot")
        check = await doctor.check_telegram_api(closed)
        assert check.status is Status.WARN and "could not be reached" in check.message
        assert TELEGRAM_TOKEN not in check.message
    finally:
        silent.close()
        await silent.wait_closed()


def test_a_port_in_use_is_one_line_with_the_fix() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        hint = doctor.port_problem("127.0.0.1", port)
        (check,) = doctor.check_ports(settings(PORT=str(port)))
    assert hint == (
        f"Port {port} on 127.0.0.1 is already in use (another `spaces` process?): stop it, "
        "or set PORT to a free port."
    )
    assert check.status is Status.WARN and hint in check.message
    assert doctor.port_problem("127.0.0.1", port) is None  # free again
    assert doctor.port_problem("127.0.0.1", 0) is None


def test_metrics_exposure() -> None:
    (open_check,) = doctor.check_metrics(settings(HOST="0.0.0.0"))
    assert open_check.status is Status.WARN and "SPACES_METRICS_TOKEN" in open_check.message
    assert doctor.check_metrics(settings())[0].status is Status.OK  # 127.0.0.1: this machine only
    assert doctor.check_metrics(settings(HOST="0.0.0.0", SPACES_METRICS_PORT="9100"))[0].status is Status.OK
    same = doctor.check_ports(settings(PORT="8080", SPACES_METRICS_PORT="8080"))
    assert [c.status for c in same] == [Status.FAIL]


def test_short_secrets_are_a_warning() -> None:
    checks = doctor.check_secret_lengths(
        settings(TELEGRAM_BOT_TOKEN=TELEGRAM_TOKEN, SPACES_METRICS_TOKEN="pw")
    )
    assert [c.message.split(" ")[0] for c in checks] == ["SPACES_METRICS_TOKEN"]


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


async def test_secrets_never_appear_in_messages(tmp_path: Path) -> None:
    bad = {"TELEGRAM_BOT_TOKEN": "LeakCanary-not-a-token", "SLACK_BOT_TOKEN": "xoxp-LeakCanary"}
    checks = check_platforms(settings(**bad))
    checks += await diagnose(
        settings(
            DATABASE_URL=f"postgresql://spaces:{secrets.DB_PASSWORD}@127.0.0.1:1/spaces",
            TELEGRAM_BOT_TOKEN=TELEGRAM_TOKEN,
            TELEGRAM_API_BASE="http://127.0.0.1:1/bot",
            TELEGRAM_MODE="webhook",
            TELEGRAM_WEBHOOK_SECRET=secrets.TELEGRAM_WEBHOOK_SECRET,
            SPACES_METRICS_TOKEN=secrets.METRICS_TOKEN,
        ),
        ffmpeg=False,
    )
    assert not any(secrets.CANARY in c.message for c in checks), checks


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
        # polling needs no public URL, but the cards' links would open on this machine only
        ({"TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN}, Status.WARN),
        ({"TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN, "SPACES_PUBLIC_URL": "http://127.0.0.2:8080"}, Status.WARN),
        ({"TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN, "SPACES_PUBLIC_URL": "http://[::1]:8080"}, Status.WARN),
        ({"TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN, "SPACES_PUBLIC_URL": "http://app.localhost"}, Status.WARN),
        ({"TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN, "SPACES_PUBLIC_URL": "http://192.168.1.5:8080"}, Status.OK),
        ({"SPACES_PUBLIC_URL": "http://localhost:8080"}, Status.OK),  # the console alone: local is fine
    ],
)
def test_public_url(env: dict[str, str], status: Status) -> None:
    (check,) = check_public_url(settings(**env))
    assert check.status is status, check


def test_a_loopback_public_url_says_why_it_matters() -> None:
    (check,) = check_public_url(settings(TELEGRAM_BOT_TOKEN=TELEGRAM_TOKEN))
    assert "Telegram is configured" in check.message and "links nobody else can open" in check.message


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


async def test_discord_token_application_and_public_key_are_checked_against_discord() -> None:
    from tests.fakes.discord import DiscordEmulator

    async with DiscordEmulator() as dc:
        good = {
            "DISCORD_BOT_TOKEN": dc.token,
            "DISCORD_API_BASE": dc.base_url,
            "DISCORD_APPLICATION_ID": str(dc.application_id),
            "DISCORD_PUBLIC_KEY": dc.public_key,
        }
        check = await doctor.check_discord_api(settings(**good))
        assert check.status is Status.OK and check.message.startswith("Discord accepts the token: this is ")

        # the key of another application: every interaction over HTTP would be refused
        other_key = "ab" * 32
        check = await doctor.check_discord_api(settings(**{**good, "DISCORD_PUBLIC_KEY": other_key}))
        assert check.failed and "DISCORD_PUBLIC_KEY is not this application's public key" in check.message

        # a reset token: refused, and the token is never shown
        stale = dc.token[:-4] + "ZZZZ"
        check = await doctor.check_discord_api(settings(**{**good, "DISCORD_BOT_TOKEN": stale}))
        assert check.failed and check.message.startswith("Discord refused DISCORD_BOT_TOKEN (401)")
        assert stale not in check.message and dc.token not in check.message
        dc.take_violations()  # the refused token was on purpose


async def test_no_platform_says_how_to_connect_one() -> None:
    (check,) = check_platforms(settings())
    assert "TELEGRAM_BOT_TOKEN" in check.message and "DISCORD_BOT_TOKEN" in check.message


async def test_slack_token_and_oauth_credentials_are_checked_against_slack() -> None:
    from tests.fakes.slack import SlackEmulator

    async with SlackEmulator() as sl:
        sl.create_workspace("Acme", token=secrets.SLACK_BOT_TOKEN)
        good = {
            "SLACK_API_BASE": sl.api_base,
            "SLACK_BOT_TOKEN": secrets.SLACK_BOT_TOKEN,
            "SLACK_SIGNING_SECRET": secrets.SLACK_SIGNING_SECRET,
            "SLACK_CLIENT_ID": sl.client_id,
            "SLACK_CLIENT_SECRET": sl.client_secret,
            "SPACES_PUBLIC_URL": "https://spaces.example.org",
        }
        check = await doctor.check_slack_api(settings(**good))
        assert check.status is Status.OK, check.message
        assert "Acme" in check.message and "OAuth credentials are accepted" in check.message

        wrong = await doctor.check_slack_api(settings(**{**good, "SLACK_CLIENT_SECRET": "LeakCanary-wrong"}))
        assert wrong.failed and "SLACK_CLIENT_ID/SLACK_CLIENT_SECRET" in wrong.message
        assert "LeakCanary" not in wrong.message

        sl.fail_next("auth.test", "token_revoked")  # the app was uninstalled: its token revoked
        revoked = await doctor.check_slack_api(settings(**good))
        assert revoked.failed and revoked.message.startswith("Slack refused SLACK_BOT_TOKEN (token_revoked)")
        assert secrets.SLACK_BOT_TOKEN not in revoked.message


def test_slack_oauth_needs_a_public_url() -> None:
    s = settings(SLACK_CLIENT_ID="1.2", SLACK_CLIENT_SECRET="LeakCanary-x", SLACK_SIGNING_SECRET="s" * 20)
    (check,) = by_name(check_platforms(s), "slack")
    assert check.failed and "SPACES_PUBLIC_URL" in check.message
    s = settings(
        SLACK_CLIENT_ID="1.2",
        SLACK_CLIENT_SECRET="LeakCanary-x",
        SLACK_SIGNING_SECRET="s" * 20,
        SPACES_PUBLIC_URL="https://spaces.example.org",
    )
    (check,) = by_name(check_platforms(s), "slack")
    assert check.status is Status.OK and "OAuth installs at /slack/install" in check.message
