"""Settings from the environment (12-factor), with one optional section per platform.

Nothing here runs at import time: the composition root (``bots.cli``) calls :meth:`Settings.from_env` once.
Every variable is documented in ``config/example.env``; copy it to ``.env`` to run locally.

The database URL is kept as configured (``postgres://…`` from Heroku included); ``storage.db.normalize_url``
turns it into an async driver URL where the engine is built, so this package needs no SQL layer.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from config.timing import Timings

DEFAULT_DATABASE_URL = "sqlite:///./spaces.db"
LOCALES = ("en", "fr")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Telegram's setWebhook secret_token: 1-256 characters, only A-Z, a-z, 0-9, _ and -
TELEGRAM_SECRET_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Settings(BaseSettings):
    """Everything the service reads from its environment. Secrets are ``SecretStr``: they never print."""

    model_config = SettingsConfigDict(
        extra="ignore",
        env_ignore_empty=True,  # `TELEGRAM_BOT_TOKEN=` copied from example.env means "not set"
        case_sensitive=False,
        populate_by_name=True,
        frozen=True,
    )

    # --- core service ------------------------------------------------------------------------------------
    database_url: str = Field(
        DEFAULT_DATABASE_URL, validation_alias="DATABASE_URL", repr=False
    )  # may hold a password
    port: int = Field(8080, ge=0, le=65535, validation_alias="PORT")
    host: str = Field("127.0.0.1", validation_alias="HOST")
    public_url_setting: str | None = Field(None, validation_alias="SPACES_PUBLIC_URL")
    default_tz: str = Field("UTC", validation_alias="SPACES_DEFAULT_TZ")
    default_locale: str = Field("en", validation_alias="SPACES_DEFAULT_LOCALE")
    ffmpeg_setting: str | None = Field(None, validation_alias="SPACES_FFMPEG")
    # --- live audio: the folder whose files hosts may play (`file:<name>`; None: no file sources), how the
    # other processes reach this one for a Space whose audio it owns (default: its own bound address), and
    # the Opus bitrate every bridge encodes at
    media_dir: str | None = Field(None, validation_alias="SPACES_MEDIA_DIR")
    internal_url_setting: str | None = Field(None, validation_alias="SPACES_INTERNAL_URL")
    audio_bitrate_kbps: int = Field(96, ge=16, le=510, validation_alias="SPACES_AUDIO_BITRATE")
    worker_id: str = Field(default_factory=_default_worker_id, validation_alias="SPACES_WORKER_ID")
    sweep_seconds: float = Field(15.0, gt=0, le=3600, validation_alias="SPACES_SWEEP_SECONDS")
    log_level: str = Field("INFO", validation_alias="SPACES_LOG_LEVEL")
    # also append every log line to this file ("{pid}" becomes the process id: one file per process)
    log_file: str | None = Field(None, validation_alias="SPACES_LOG_FILE")
    # /metrics: a bearer token to require, and/or its own listener (then the public port serves no /metrics)
    metrics_token: SecretStr | None = Field(None, validation_alias="SPACES_METRICS_TOKEN")
    metrics_port: int | None = Field(None, ge=0, le=65535, validation_alias="SPACES_METRICS_PORT")
    metrics_host: str = Field("127.0.0.1", validation_alias="SPACES_METRICS_HOST")
    # the delivery engine's time limits (config/timing.py derives every other one from these two)
    lease_seconds: float = Field(12.0, gt=0, le=3600, validation_alias="SPACES_LEASE_SECONDS")
    send_timeout: float = Field(5.0, gt=0, le=300, validation_alias="SPACES_SEND_TIMEOUT")

    # --- Discord -----------------------------------------------------------------------------------------
    discord_bot_token: SecretStr | None = Field(None, validation_alias="DISCORD_BOT_TOKEN")
    discord_public_key: str | None = Field(None, validation_alias="DISCORD_PUBLIC_KEY")
    discord_application_id: str | None = Field(None, validation_alias="DISCORD_APPLICATION_ID")
    # sharding: the total number of shards, and the ones this process runs ("0,1"; default: all of them)
    discord_shard_count: int | None = Field(None, ge=1, le=10000, validation_alias="DISCORD_SHARD_COUNT")
    discord_shard_ids_setting: str | None = Field(None, validation_alias="DISCORD_SHARD_IDS")
    # register the slash commands in these guilds only (instant, for development) instead of globally
    discord_guild_ids_setting: str | None = Field(None, validation_alias="DISCORD_GUILD_IDS")
    # members of this role (an id or a name) may manage every Space of their guild
    discord_moderator_role: str | None = Field(None, validation_alias="DISCORD_MODERATOR_ROLE")
    # the REST API's base URL: a rate-limiting proxy shared by several bots, or an emulator in tests
    discord_api_base: str = Field("https://discord.com/api/v10", validation_alias="DISCORD_API_BASE")

    # --- Telegram ----------------------------------------------------------------------------------------
    telegram_bot_token: SecretStr | None = Field(None, validation_alias="TELEGRAM_BOT_TOKEN")
    telegram_webhook_secret: SecretStr | None = Field(None, validation_alias="TELEGRAM_WEBHOOK_SECRET")
    telegram_mode: Literal["polling", "webhook"] = Field("polling", validation_alias="TELEGRAM_MODE")
    telegram_api_base: str = Field("https://api.telegram.org/bot", validation_alias="TELEGRAM_API_BASE")
    # Telegram's paid broadcasts: up to 1,000 messages/s for live notices, billed in Stars by Telegram
    telegram_paid_broadcast: bool = Field(False, validation_alias="TELEGRAM_PAID_BROADCAST")
    # polling: delete a webhook another deployment set, instead of refusing to start
    telegram_take_over_webhook: bool = Field(False, validation_alias="TELEGRAM_TAKE_OVER_WEBHOOK")

    # --- Slack -------------------------------------------------------------------------------------------
    slack_bot_token: SecretStr | None = Field(None, validation_alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(None, validation_alias="SLACK_SIGNING_SECRET")
    slack_app_token: SecretStr | None = Field(None, validation_alias="SLACK_APP_TOKEN")
    # OAuth v2 (one app installed in many workspaces, installs stored in the database): instead of, or with,
    # SLACK_BOT_TOKEN
    slack_client_id: str | None = Field(None, validation_alias="SLACK_CLIENT_ID")
    slack_client_secret: SecretStr | None = Field(None, validation_alias="SLACK_CLIENT_SECRET")
    # members of this user group (its handle "space-mods" or its id "S…") may manage every Space of their
    # workspace, besides the workspace's admins and owners
    slack_moderator_group: str | None = Field(None, validation_alias="SLACK_MODERATOR_GROUP")
    # the Web API's base URL (an emulator in tests); the OAuth authorize page is derived from it
    slack_api_base: str = Field("https://slack.com/api/", validation_alias="SLACK_API_BASE")

    # ------------------------------------------------------------------------------------------ building

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, env_file: str | Path | None = ".env"
    ) -> Settings:
        """Read the settings.

        With ``environ`` (tests, the doctor): exactly that mapping, nothing from the process or a file.
        Without: the process environment, over a ``.env`` file in the working directory if there is one.
        Raises ``pydantic.ValidationError``; :func:`explain` turns it into plain words.
        """
        if environ is not None:
            values: dict[str, Any] = {k.upper(): v for k, v in environ.items() if v != ""}
            return _MappingOnly(**values)
        if env_file is not None and Path(env_file).is_file():
            return cls(_env_file=env_file)  # type: ignore[call-arg]
        return cls(_env_file=None)  # type: ignore[call-arg]

    # ------------------------------------------------------------------------------------------ validation

    @field_validator("default_tz")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"unknown time zone {v!r}: use an IANA name such as Europe/Paris") from e
        return v

    @field_validator("default_locale")
    @classmethod
    def _locale(cls, v: str) -> str:
        v = v.strip().lower()
        if v not in LOCALES:
            raise ValueError(f"unsupported locale {v!r}: choose one of {', '.join(LOCALES)}")
        return v

    @field_validator("log_level")
    @classmethod
    def _level(cls, v: str) -> str:
        v = v.strip().upper()
        if v not in LOG_LEVELS:
            raise ValueError(f"unknown log level {v!r}: choose one of {', '.join(LOG_LEVELS)}")
        return v

    @field_validator("telegram_mode", mode="before")
    @classmethod
    def _mode(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("public_url_setting")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return v.rstrip("/") if v else v

    @field_validator("database_url")
    @classmethod
    def _db(cls, v: str) -> str:
        if "://" not in v:
            raise ValueError(
                "DATABASE_URL must be a URL, e.g. sqlite:///./spaces.db or postgresql://user@host/db"
            )
        return v

    @field_validator("discord_api_base")
    @classmethod
    def _api_base(cls, v: str) -> str:
        v = v.strip().rstrip("/")
        if not v.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL, e.g. https://discord.com/api/v10")
        return v

    @field_validator("slack_api_base")
    @classmethod
    def _slack_api_base(cls, v: str) -> str:
        v = v.strip()
        if not v.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL, e.g. https://slack.com/api/")
        return v if v.endswith("/") else v + "/"  # slack_sdk appends the method name to it

    @field_validator("slack_moderator_group")
    @classmethod
    def _slack_group(cls, v: str | None) -> str | None:
        v = (v or "").strip().removeprefix("@")
        return v or None

    @model_validator(mode="after")
    def _slack_oauth(self) -> Settings:
        if (self.slack_client_id is None) != (self.slack_client_secret is None):
            raise ValueError(
                "SLACK_CLIENT_ID and SLACK_CLIENT_SECRET go together (Basic Information → App Credentials)"
            )
        return self

    @field_validator("discord_shard_ids_setting", "discord_guild_ids_setting")
    @classmethod
    def _id_list(cls, v: str | None) -> str | None:
        if v is None:
            return v
        items = [i.strip() for i in v.split(",") if i.strip()]
        if not items or not all(i.isdigit() for i in items):
            raise ValueError("must be a comma-separated list of numeric ids, e.g. 0,1")
        return ",".join(items)

    @model_validator(mode="after")
    def _shards(self) -> Settings:
        ids = self.discord_shard_ids
        if ids is not None:
            if self.discord_shard_count is None:
                raise ValueError("DISCORD_SHARD_IDS needs DISCORD_SHARD_COUNT (the total number of shards)")
            if max(ids) >= self.discord_shard_count:
                raise ValueError("DISCORD_SHARD_IDS must be below DISCORD_SHARD_COUNT (shard ids start at 0)")
        return self

    @model_validator(mode="after")
    def _worker(self) -> Settings:
        if not self.worker_id.strip():
            raise ValueError("SPACES_WORKER_ID must not be blank")
        return self

    @model_validator(mode="after")
    def _timings(self) -> Settings:
        self.timings  # noqa: B018 — raises ValueError (naming the variables) when they do not fit together
        return self

    # ------------------------------------------------------------------------------------------ derived

    @property
    def public_url(self) -> str:
        """Absolute base URL of the web app, without a trailing slash (Space links are built on it)."""
        if self.public_url_setting:
            return self.public_url_setting
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    def ffmpeg_path(self) -> str:
        """The ffmpeg executable: SPACES_FFMPEG, else the static build shipped by imageio-ffmpeg.

        Resolved on call (the import and the file look-up are I/O the import of this module must not do)."""
        if self.ffmpeg_setting:
            return self.ffmpeg_setting
        import imageio_ffmpeg  # lazy on purpose: the import looks for the binary

        return str(imageio_ffmpeg.get_ffmpeg_exe())

    @property
    def timings(self) -> Timings:
        """Every time limit of the delivery engine: lease, renewal, send and HTTP timeouts."""
        return Timings(lease_seconds=self.lease_seconds, send_timeout=self.send_timeout)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.split(":", 1)[0].split("+", 1)[0].lower() == "sqlite"

    @property
    def discord_enabled(self) -> bool:
        return self.discord_bot_token is not None

    @property
    def discord_shard_ids(self) -> tuple[int, ...] | None:
        v = self.discord_shard_ids_setting
        return tuple(int(i) for i in v.split(",")) if v else None

    @property
    def discord_guild_ids(self) -> tuple[str, ...]:
        v = self.discord_guild_ids_setting
        return tuple(v.split(",")) if v else ()

    @property
    def telegram_enabled(self) -> bool:
        return self.telegram_bot_token is not None

    @property
    def slack_oauth(self) -> bool:
        """Installs through OAuth v2 (/slack/install), one bot token per workspace kept in the database."""
        return self.slack_client_id is not None and self.slack_client_secret is not None

    @property
    def slack_enabled(self) -> bool:
        return self.slack_bot_token is not None or self.slack_oauth

    @property
    def slack_oauth_base(self) -> str:
        """The page a user installs the app from: https://slack.com/oauth/v2/authorize for the real API base
        https://slack.com/api/ (an emulator serves both under one root the same way)."""
        return self.slack_api_base.removesuffix("/").removesuffix("/api") + "/oauth/v2/authorize"

    @property
    def webhook_mode(self) -> bool:
        """Some platform needs the internet to reach SPACES_PUBLIC_URL: Telegram in webhook mode, or Slack
        over HTTP events (without SLACK_APP_TOKEN, i.e. not Socket Mode)."""
        telegram = self.telegram_enabled and self.telegram_mode == "webhook"
        slack = self.slack_enabled and self.slack_app_token is None
        return telegram or slack


class _MappingOnly(Settings):
    """Settings from the mapping given to :meth:`Settings.from_env` only: no process environment, no file."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def explain(error: Exception) -> list[str]:
    """A pydantic ValidationError as one plain sentence per problem, naming the environment variable."""
    errors = getattr(error, "errors", None)
    if not callable(errors):
        return [str(error)]
    lines: list[str] = []
    for item in errors():
        loc = item.get("loc") or ()
        field = str(loc[0]) if loc else ""
        name = _ENV_NAMES.get(field, field.upper())
        msg = str(item.get("msg", "invalid")).removeprefix("Value error, ")
        lines.append(f"{name}: {msg}" if name else msg)
    return lines


_ENV_NAMES: dict[str, str] = {
    "database_url": "DATABASE_URL",
    "port": "PORT",
    "host": "HOST",
    "public_url_setting": "SPACES_PUBLIC_URL",
    "default_tz": "SPACES_DEFAULT_TZ",
    "default_locale": "SPACES_DEFAULT_LOCALE",
    "ffmpeg_setting": "SPACES_FFMPEG",
    "media_dir": "SPACES_MEDIA_DIR",
    "internal_url_setting": "SPACES_INTERNAL_URL",
    "audio_bitrate_kbps": "SPACES_AUDIO_BITRATE",
    "worker_id": "SPACES_WORKER_ID",
    "sweep_seconds": "SPACES_SWEEP_SECONDS",
    "log_level": "SPACES_LOG_LEVEL",
    "log_file": "SPACES_LOG_FILE",
    "metrics_token": "SPACES_METRICS_TOKEN",
    "metrics_port": "SPACES_METRICS_PORT",
    "metrics_host": "SPACES_METRICS_HOST",
    "lease_seconds": "SPACES_LEASE_SECONDS",
    "send_timeout": "SPACES_SEND_TIMEOUT",
    "discord_shard_count": "DISCORD_SHARD_COUNT",
    "discord_shard_ids_setting": "DISCORD_SHARD_IDS",
    "discord_guild_ids_setting": "DISCORD_GUILD_IDS",
    "discord_moderator_role": "DISCORD_MODERATOR_ROLE",
    "discord_api_base": "DISCORD_API_BASE",
    "telegram_mode": "TELEGRAM_MODE",
    "telegram_api_base": "TELEGRAM_API_BASE",
    "telegram_paid_broadcast": "TELEGRAM_PAID_BROADCAST",
    "telegram_take_over_webhook": "TELEGRAM_TAKE_OVER_WEBHOOK",
    "slack_client_id": "SLACK_CLIENT_ID",
    "slack_moderator_group": "SLACK_MODERATOR_GROUP",
    "slack_api_base": "SLACK_API_BASE",
}
