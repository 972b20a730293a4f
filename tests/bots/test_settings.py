from __future__ import annotations

import pytest
from pydantic import ValidationError

from bots.app import display_url
from config.settings import Settings, explain
from storage.db import normalize_url


def test_defaults_embedded_sqlite_on_localhost() -> None:
    s = Settings.from_env({})
    assert s.database_url == "sqlite:///./spaces.db"
    assert s.is_sqlite
    assert (s.host, s.port) == ("127.0.0.1", 8080)
    assert s.public_url == "http://127.0.0.1:8080"
    assert (s.default_tz, s.default_locale, s.sweep_seconds, s.log_level) == ("UTC", "en", 15.0, "INFO")
    assert s.telegram_mode == "polling"
    assert s.telegram_api_base == "https://api.telegram.org/bot"
    assert s.worker_id  # hostname-pid
    assert not (s.discord_enabled or s.telegram_enabled or s.slack_enabled)


def test_from_mapping_ignores_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:abc")
    assert not Settings.from_env({}).telegram_enabled
    assert Settings.from_env(env_file=None).telegram_enabled


def test_env_values_and_secrets() -> None:
    s = Settings.from_env(
        {
            "PORT": "9000",
            "HOST": "0.0.0.0",
            "SPACES_PUBLIC_URL": "https://spaces.example.org/",
            "SPACES_DEFAULT_TZ": "Europe/Paris",
            "SPACES_DEFAULT_LOCALE": "FR",
            "SPACES_WORKER_ID": "web.1",
            "SPACES_SWEEP_SECONDS": "5",
            "SPACES_LOG_LEVEL": "debug",
            "SPACES_FFMPEG": "/opt/ffmpeg",
            "TELEGRAM_BOT_TOKEN": "123456:" + "a" * 35,
            "TELEGRAM_MODE": "Webhook",
            "TELEGRAM_WEBHOOK_SECRET": "s3cret",
            "SLACK_BOT_TOKEN": "xoxb-1",
            "DISCORD_BOT_TOKEN": "x.y.z",
        }
    )
    assert s.port == 9000 and s.host == "0.0.0.0"
    assert s.public_url == "https://spaces.example.org"  # no trailing slash: links append /s/<id>
    assert (s.default_tz, s.default_locale, s.worker_id, s.sweep_seconds, s.log_level) == (
        "Europe/Paris",
        "fr",
        "web.1",
        5.0,
        "DEBUG",
    )
    assert s.ffmpeg_path() == "/opt/ffmpeg"
    assert s.telegram_enabled and s.telegram_mode == "webhook" and s.webhook_mode
    assert s.slack_enabled and s.discord_enabled
    # secrets never print
    assert "a" * 35 not in repr(s) and "s3cret" not in str(s)
    assert s.telegram_bot_token is not None and s.telegram_bot_token.get_secret_value().startswith("123456:")


def test_public_url_follows_port_when_unset() -> None:
    assert Settings.from_env({"PORT": "5000", "HOST": "0.0.0.0"}).public_url == "http://127.0.0.1:5000"


def test_empty_variables_mean_unset() -> None:
    # example.env copied as-is has `TELEGRAM_BOT_TOKEN=`
    s = Settings.from_env({"TELEGRAM_BOT_TOKEN": "", "PORT": ""})
    assert not s.telegram_enabled and s.port == 8080


def test_lowercase_names_are_accepted() -> None:
    assert Settings.from_env({"port": "8081"}).port == 8081


def test_invalid_values_are_explained_with_the_variable_name() -> None:
    with pytest.raises(ValidationError) as info:
        Settings.from_env(
            {
                "PORT": "eighty",
                "SPACES_DEFAULT_TZ": "Mars/Olympus",
                "SPACES_DEFAULT_LOCALE": "de",
                "TELEGRAM_MODE": "carrier-pigeon",
                "DATABASE_URL": "spaces.db",
            }
        )
    lines = explain(info.value)
    joined = "\n".join(lines)
    for name in ("PORT", "SPACES_DEFAULT_TZ", "SPACES_DEFAULT_LOCALE", "TELEGRAM_MODE", "DATABASE_URL"):
        assert name in joined
    assert "Mars/Olympus" in joined


def test_database_password_is_not_in_repr() -> None:
    s = Settings.from_env({"DATABASE_URL": "postgres://spaces:hunter2@db.example:5432/spaces"})
    assert "hunter2" not in repr(s)
    assert not s.is_sqlite


def test_heroku_postgres_url_is_normalised_where_the_engine_is_built() -> None:
    s = Settings.from_env(
        {"DATABASE_URL": "postgres://spaces:hunter2@db.example:5432/spaces?sslmode=require"}
    )
    url = normalize_url(s.database_url)
    assert url.startswith("postgresql+asyncpg://spaces:hunter2@db.example:5432/spaces")
    assert "ssl=require" in url
    shown = display_url(s.database_url)
    assert "hunter2" not in shown and shown.startswith("postgresql+asyncpg://spaces:***@db.example")


def test_ffmpeg_defaults_to_the_bundled_binary() -> None:
    path = Settings.from_env({}).ffmpeg_path()
    assert "ffmpeg" in path.lower()


def test_discord_sharding_guilds_and_moderator_role() -> None:
    s = Settings.from_env(
        {
            "DISCORD_BOT_TOKEN": "x.y.z",
            "DISCORD_SHARD_COUNT": "4",
            "DISCORD_SHARD_IDS": " 2, 3 ",
            "DISCORD_GUILD_IDS": "111,222",
            "DISCORD_MODERATOR_ROLE": "Hosts",
        }
    )
    assert (s.discord_shard_count, s.discord_shard_ids) == (4, (2, 3))
    assert s.discord_guild_ids == ("111", "222")
    assert s.discord_moderator_role == "Hosts"
    assert s.discord_api_base == "https://discord.com/api/v10"
    proxied = Settings.from_env({"DISCORD_API_BASE": "http://proxy.internal:8080/api/v10/"})
    assert proxied.discord_api_base == "http://proxy.internal:8080/api/v10"
    unsharded = Settings.from_env({"DISCORD_BOT_TOKEN": "x.y.z"})
    assert (unsharded.discord_shard_count, unsharded.discord_shard_ids, unsharded.discord_guild_ids) == (
        None,
        None,
        (),
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"DISCORD_SHARD_IDS": "0,1"}, "DISCORD_SHARD_COUNT"),
        ({"DISCORD_SHARD_COUNT": "2", "DISCORD_SHARD_IDS": "2"}, "DISCORD_SHARD_IDS"),
        ({"DISCORD_SHARD_COUNT": "2", "DISCORD_SHARD_IDS": "one"}, "DISCORD_SHARD_IDS"),
        ({"DISCORD_GUILD_IDS": "my guild"}, "DISCORD_GUILD_IDS"),
        ({"DISCORD_API_BASE": "discord.com"}, "DISCORD_API_BASE"),
    ],
)
def test_discord_settings_are_checked(env: dict[str, str], named: str) -> None:
    with pytest.raises(ValidationError) as info:
        Settings.from_env(env)
    assert named in "\n".join(explain(info.value))


def test_slack_with_oauth_credentials_alone() -> None:
    s = Settings.from_env({"SLACK_CLIENT_ID": "1111.2222", "SLACK_CLIENT_SECRET": "LeakCanary-client-secret"})
    assert s.slack_enabled and s.slack_oauth and s.slack_bot_token is None
    assert s.slack_api_base == "https://slack.com/api/"
    assert s.slack_oauth_base == "https://slack.com/oauth/v2/authorize"
    assert "LeakCanary" not in repr(s)


def test_slack_settings_are_checked() -> None:
    with pytest.raises(ValidationError, match="go together"):
        Settings.from_env({"SLACK_CLIENT_ID": "1111.2222"})
    with pytest.raises(ValidationError, match="http"):
        Settings.from_env({"SLACK_API_BASE": "slack.com/api"})
    s = Settings.from_env(
        {"SLACK_API_BASE": "http://127.0.0.1:9/api", "SLACK_MODERATOR_GROUP": " @space-mods "}
    )
    assert s.slack_api_base == "http://127.0.0.1:9/api/"  # slack_sdk appends the method name
    assert s.slack_oauth_base == "http://127.0.0.1:9/oauth/v2/authorize"
    assert s.slack_moderator_group == "space-mods" and not s.slack_enabled
