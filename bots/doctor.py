"""``spaces doctor``: is this installation ready? One line per check, in plain words, exit 1 on any failure.

Checks, in order: configuration, database (reachable, migrated), ffmpeg (runs, has libopus), the public URL
(links on cards must open for other people), the listening ports, /metrics exposure, and each configured
platform's settings (token shapes, companions). A Telegram token of the right shape is then tried for real
(``getMe``, within :data:`API_TIMEOUT`): a revoked token fails here rather than at start-up.

No check ever prints a secret: messages name the variable, never its value.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import re
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

from config.settings import TELEGRAM_SECRET_RE, Settings, explain


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    message: str

    @property
    def failed(self) -> bool:
        return self.status is Status.FAIL


TELEGRAM_TOKEN_RE = re.compile(r"\d+:[\w-]{30,}")
DISCORD_KEY_RE = re.compile(r"[0-9a-fA-F]{64}")
DISCORD_APP_ID_RE = re.compile(r"\d{15,22}")
FFMPEG_TIMEOUT = 15.0
API_TIMEOUT = 10.0  # seconds for a platform's API to answer the token check
_LOCAL_NAMES = ("localhost", "ip6-localhost", "ip6-loopback")


async def diagnose(
    settings: Settings, *, database: bool = True, ffmpeg: bool = True, network: bool = True
) -> list[Check]:
    """Every check for ``settings`` (already valid: :func:`check_environment` covers an invalid one).
    ``network=False`` leaves out the calls to the platforms' APIs."""
    checks = [Check("configuration", Status.OK, "all variables are valid")]
    if database:
        checks.append(await check_database(settings))
    if ffmpeg:
        checks += await check_ffmpeg(settings)
    checks += check_public_url(settings)
    checks += check_ports(settings)
    checks += check_metrics(settings)
    platforms = check_platforms(settings)
    if network and any(c.name == "telegram" and c.status is Status.OK for c in platforms):
        api = await check_telegram_api(settings)  # the shape is right: does Telegram know the token?
        platforms = [api if c.name == "telegram" and c.status is Status.OK else c for c in platforms]
    if network and any(c.name == "slack" and c.status is Status.OK for c in platforms):
        api = await check_slack_api(settings)  # does Slack know the token, the client id and secret?
        platforms = [api if c.name == "slack" and c.status is Status.OK else c for c in platforms]
    if network and any(c.name == "discord" and c.status is Status.OK for c in platforms):
        api = await check_discord_api(settings)  # does Discord know the token, and is it this application?
        platforms = [api if c.name == "discord" and c.status is Status.OK else c for c in platforms]
    checks += platforms
    checks += check_secret_lengths(settings)
    return checks


def check_environment(environ: Mapping[str, str] | None = None) -> tuple[Settings | None, list[Check]]:
    """Read the settings; an invalid configuration becomes one failed check per problem."""
    try:
        return Settings.from_env(environ), []
    except Exception as e:
        return None, [Check("configuration", Status.FAIL, line) for line in explain(e)]


# ---------------------------------------------------------------------------------------------- database


async def check_database(settings: Settings) -> Check:
    from sqlalchemy import text  # the doctor is the only user

    from bots.app import display_url
    from storage import migrate
    from storage.db import make_engine

    shown = display_url(settings.database_url)
    missing = _missing_sqlite_dir(settings)
    if missing is not None:
        # say it plainly (and don't let aiosqlite fail in its thread): SQLite creates the file, not the folder
        return Check(
            "database",
            Status.FAIL,
            f"cannot open {shown}: the folder {missing} does not exist — create it or change DATABASE_URL",
        )
    engine = make_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as e:
        return Check(
            "database", Status.FAIL, f"cannot connect to {shown}: {_first_line(e)} — check DATABASE_URL"
        )
    finally:
        await engine.dispose()
    try:
        current, head = await migrate.current(settings.database_url), migrate.head()
    except Exception as e:
        return Check(
            "database", Status.FAIL, f"{shown} is reachable but its schema can't be read: {_first_line(e)}"
        )
    if current == head:
        return Check("database", Status.OK, f"{shown} is reachable and migrated ({head})")
    fix = (
        "`spaces run` migrates SQLite by itself; or run `spaces migrate`"
        if settings.is_sqlite
        else "run `spaces migrate` (the Procfile release phase does it on deploy)"
    )
    status = Status.WARN if settings.is_sqlite else Status.FAIL
    return Check(
        "database", status, f"{shown} is at {current or 'no schema yet'}, this version needs {head}: {fix}"
    )


def _missing_sqlite_dir(settings: Settings) -> Path | None:
    if not settings.is_sqlite:
        return None
    from sqlalchemy.engine import make_url

    database = make_url(settings.database_url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    folder = Path(database).expanduser().parent
    return None if folder.is_dir() else folder


# ---------------------------------------------------------------------------------------------- ffmpeg


async def check_ffmpeg(settings: Settings) -> list[Check]:
    try:
        exe = settings.ffmpeg_path()
    except Exception as e:
        return [
            Check(
                "ffmpeg", Status.FAIL, f"no ffmpeg found ({_first_line(e)}) — set SPACES_FFMPEG to its path"
            )
        ]
    code, out = await _run(exe, "-hide_banner", "-version")
    if code is None or code != 0:
        return [
            Check(
                "ffmpeg", Status.FAIL, f"{exe} does not run ({out}) — set SPACES_FFMPEG to a working ffmpeg"
            )
        ]
    version = out.splitlines()[0].split(" Copyright", 1)[0] if out else "ffmpeg"
    checks = [Check("ffmpeg", Status.OK, f"{version} ({exe})")]
    code, out = await _run(exe, "-hide_banner", "-encoders")
    if code == 0 and "libopus" in out:
        checks.append(Check("opus", Status.OK, "ffmpeg can encode Opus (libopus), as Discord voice needs"))
    else:
        checks.append(
            Check(
                "opus",
                Status.FAIL,
                f"{exe} has no libopus encoder: Discord voice needs it — use "
                "the ffmpeg shipped with imageio-ffmpeg (unset SPACES_FFMPEG) or a build with libopus",
            )
        )
    return checks


async def _run(*cmd: str) -> tuple[int | None, str]:
    try:
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
    except OSError as e:
        return None, e.strerror or str(e)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), FFMPEG_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return None, f"no answer within {FFMPEG_TIMEOUT:g} s"
    return proc.returncode, out.decode(errors="replace")


# ---------------------------------------------------------------------------------------------- public URL


def check_public_url(settings: Settings) -> list[Check]:
    url = settings.public_url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [
            Check(
                "public url", Status.FAIL, f"SPACES_PUBLIC_URL must be an absolute http(s) URL, got {url!r}"
            )
        ]
    local = is_local_host(parts.hostname)
    if local and settings.webhook_mode:
        return [
            Check(
                "public url",
                Status.WARN,
                f"{url} is local, but a platform is set to call us by webhook — "
                "set SPACES_PUBLIC_URL to the address the internet reaches (https://…)",
            )
        ]
    platforms = configured_platforms(settings)
    if local and platforms:
        return [
            Check(
                "public url",
                Status.WARN,
                f"{url} only opens on this machine, but {' and '.join(platforms)} is configured: Space "
                "cards would carry links nobody else can open — set SPACES_PUBLIC_URL to the address "
                "people reach (https://…)",
            )
        ]
    if parts.scheme == "http" and not local and settings.webhook_mode:
        return [
            Check("public url", Status.WARN, f"{url} is plain http: platforms send webhooks to https only")
        ]
    return [Check("public url", Status.OK, f"Space links point at {url}/s/<id>")]


def is_local_host(host: str) -> bool:
    """A loopback or unspecified address, or a name for one: reachable from this machine only."""
    name = host.strip("[]").lower().rstrip(".")
    if name in _LOCAL_NAMES or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _listens_locally(host: str) -> bool:
    """A listener on this address is reachable from this machine only (0.0.0.0 listens everywhere)."""
    return is_local_host(host) and host.strip("[]") not in ("0.0.0.0", "::", "")


def configured_platforms(settings: Settings) -> list[str]:
    return [
        name
        for name, on in (
            ("Discord", settings.discord_enabled),
            ("Telegram", settings.telegram_enabled),
            ("Slack", settings.slack_enabled),
        )
        if on
    ]


# ---------------------------------------------------------------------------------------------- ports


def listen_addresses(settings: Settings) -> list[tuple[str, int, str]]:
    """(host, port, the variable that sets the port) of every listener ``spaces run``/``web`` opens."""
    found = [(settings.host, settings.port, "PORT")]
    if settings.metrics_port is not None:
        found.append((settings.metrics_host, settings.metrics_port, "SPACES_METRICS_PORT"))
    return found


def port_problem(host: str, port: int, setting: str = "PORT") -> str | None:
    """A one-line hint when ``host:port`` cannot be listened on (in use, reserved), else None."""
    if port == 0:  # the system picks a free one
        return None
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError:
        return None  # an unknown host: the server's own error says so
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # the server sets SO_REUSEADDR too: a port in TIME_WAIT is free for it, one with a listener is not
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as e:
            return bind_hint(e, host, port, setting)
    return None


def bind_hint(e: OSError, host: str, port: int, setting: str) -> str | None:
    """What to do about a failed bind, in one line; None when the error is something else."""
    if e.errno == errno.EADDRINUSE:
        return (
            f"Port {port} on {host} is already in use (another `spaces` process?): stop it, "
            f"or set {setting} to a free port."
        )
    if e.errno == errno.EACCES:
        return f"Port {port} on {host} needs privileges this user does not have: set {setting} above 1023."
    if e.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine: set HOST to one of its addresses, or 0.0.0.0."
    return None


def check_ports(settings: Settings) -> list[Check]:
    checks: list[Check] = []
    if settings.metrics_port is not None and settings.metrics_port == settings.port != 0:
        checks.append(
            Check(
                "ports",
                Status.FAIL,
                f"SPACES_METRICS_PORT and PORT are both {settings.port}: give /metrics a port of its own",
            )
        )
        return checks
    for host, port, name in listen_addresses(settings):
        hint = port_problem(host, port, name)
        if hint is not None:
            checks.append(Check("ports", Status.WARN, f"{hint} (Fine if it is this service, running.)"))
    if not checks:
        shown = ", ".join(f"{h}:{p}" for h, p, _ in listen_addresses(settings))
        checks.append(Check("ports", Status.OK, f"{shown} free for `spaces run` / `spaces web`"))
    return checks


# ---------------------------------------------------------------------------------------------- metrics


def check_metrics(settings: Settings) -> list[Check]:
    where = (
        f"on its own listener {settings.metrics_host}:{settings.metrics_port}"
        if settings.metrics_port is not None
        else "on the web port"
    )
    if settings.metrics_token is not None:
        return [Check("metrics", Status.OK, f"/metrics {where}, behind SPACES_METRICS_TOKEN")]
    if settings.metrics_port is None and not _listens_locally(settings.host):
        return [
            Check(
                "metrics",
                Status.WARN,
                f"/metrics is open to anyone who reaches port {settings.port} (HOST={settings.host}) — set "
                "SPACES_METRICS_TOKEN, or SPACES_METRICS_PORT to serve it on a private listener",
            )
        ]
    return [Check("metrics", Status.OK, f"/metrics {where}")]


# ---------------------------------------------------------------------------------------------- platforms


def check_platforms(settings: Settings) -> list[Check]:
    checks: list[Check] = []
    checks += _discord(settings)
    checks += _telegram(settings)
    checks += _slack(settings)
    if not (settings.discord_enabled or settings.telegram_enabled or settings.slack_enabled):
        checks.append(
            Check(
                "platforms",
                Status.WARN,
                "no platform configured: only the console works — set TELEGRAM_BOT_TOKEN "
                "or DISCORD_BOT_TOKEN or SLACK_BOT_TOKEN (README, “Connecting a platform”)",
            )
        )
    return checks


def _secret(value: object) -> str:
    getter = getattr(value, "get_secret_value", None)
    return str(getter()) if callable(getter) else ""


def _discord(s: Settings) -> list[Check]:
    if not s.discord_enabled:
        if s.discord_public_key or s.discord_application_id:
            return [
                Check(
                    "discord",
                    Status.FAIL,
                    "DISCORD_PUBLIC_KEY/DISCORD_APPLICATION_ID are set but "
                    "DISCORD_BOT_TOKEN is not: add the bot token (Developer Portal → Bot → Reset Token)",
                )
            ]
        return []
    problems: list[str] = []
    token = _secret(s.discord_bot_token).strip()
    if token.lower().startswith("bot ") or any(c.isspace() for c in token) or token.count(".") != 2:
        problems.append(
            "DISCORD_BOT_TOKEN doesn't look like a bot token: paste it as the Developer Portal's "
            "Bot page shows it (three dot-separated parts, no 'Bot ' prefix, not the client secret)"
        )
    if s.discord_public_key is not None and not DISCORD_KEY_RE.fullmatch(s.discord_public_key.strip()):
        problems.append(
            "DISCORD_PUBLIC_KEY must be the 64 hexadecimal characters shown on the app's General "
            "Information page"
        )
    if s.discord_application_id is not None and not DISCORD_APP_ID_RE.fullmatch(
        s.discord_application_id.strip()
    ):
        problems.append("DISCORD_APPLICATION_ID must be the numeric Application ID (General Information)")
    return _platform_checks("discord", problems, "token, public key and application id look right")


def _telegram(s: Settings) -> list[Check]:
    if not s.telegram_enabled:
        if s.telegram_webhook_secret is not None:
            return [
                Check(
                    "telegram",
                    Status.FAIL,
                    "TELEGRAM_WEBHOOK_SECRET is set but TELEGRAM_BOT_TOKEN is not: "
                    "add the token @BotFather gave you",
                )
            ]
        return []
    problems: list[str] = []
    if not TELEGRAM_TOKEN_RE.fullmatch(_secret(s.telegram_bot_token).strip()):
        problems.append(
            "TELEGRAM_BOT_TOKEN doesn't look like a bot token (digits, a colon, then 30+ letters, "
            "digits, - or _), as @BotFather gives it"
        )
    if s.telegram_mode == "webhook":
        secret = _secret(s.telegram_webhook_secret)
        if not secret:
            problems.append(
                "TELEGRAM_MODE=webhook needs TELEGRAM_WEBHOOK_SECRET, so that only Telegram can "
                "post updates to us"
            )
        elif not TELEGRAM_SECRET_RE.fullmatch(secret):
            problems.append(
                "TELEGRAM_WEBHOOK_SECRET must be 1–256 characters of A-Z, a-z, 0-9, _ and - "
                "(Telegram's rule for secret_token)"
            )
    api = urlsplit(s.telegram_api_base)
    if api.scheme not in ("http", "https") or not api.hostname:
        problems.append(f"TELEGRAM_API_BASE must be an http(s) URL, got {s.telegram_api_base!r}")
    mode = f"{s.telegram_mode} mode"
    return _platform_checks("telegram", problems, f"token looks right ({mode})")


def _slack(s: Settings) -> list[Check]:
    if not s.slack_enabled:
        if s.slack_signing_secret is not None or s.slack_app_token is not None:
            return [
                Check(
                    "slack",
                    Status.FAIL,
                    "SLACK_SIGNING_SECRET/SLACK_APP_TOKEN are set but SLACK_BOT_TOKEN "
                    "is not: add the Bot User OAuth Token (xoxb-…) from OAuth & Permissions "
                    "(or SLACK_CLIENT_ID and SLACK_CLIENT_SECRET to install in many workspaces)",
                )
            ]
        return []
    problems: list[str] = []
    if s.slack_bot_token is not None and not _secret(s.slack_bot_token).startswith("xoxb-"):
        problems.append("SLACK_BOT_TOKEN must be the Bot User OAuth Token, starting with xoxb-")
    app_token = _secret(s.slack_app_token)
    if s.slack_app_token is not None and not app_token.startswith("xapp-"):
        problems.append(
            "SLACK_APP_TOKEN must be an app-level token starting with xapp- (Basic Information → "
            "App-Level Tokens, scope connections:write)"
        )
    signing = _secret(s.slack_signing_secret)
    if not signing:
        problems.append(
            "SLACK_SIGNING_SECRET is missing (Basic Information → Signing Secret): without it we "
            "cannot tell Slack's requests from forged ones"
        )
    if s.slack_oauth and s.public_url_setting is None:
        problems.append(
            "SLACK_CLIENT_ID/SLACK_CLIENT_SECRET need SPACES_PUBLIC_URL: installers open "
            "<SPACES_PUBLIC_URL>/slack/install, and Slack sends them back to "
            "<SPACES_PUBLIC_URL>/slack/oauth_redirect (add it under OAuth & Permissions → Redirect URLs)"
        )
    how = "Socket Mode" if s.slack_app_token is not None else "HTTP events"
    if s.slack_oauth:
        how += ", OAuth installs at /slack/install"
    return _platform_checks("slack", problems, f"tokens look right ({how})")


async def check_slack_api(settings: Settings, *, within: float = API_TIMEOUT) -> Check:
    """``auth.test`` with SLACK_BOT_TOKEN (does Slack, or SLACK_API_BASE, know it, and which workspace is
    it?) and, with OAuth configured, ``oauth.v2.access`` with a made-up code: Slack checks the client id and
    secret before the code, so "invalid_code" means both are right."""
    from slack_sdk.errors import SlackApiError
    from slack_sdk.web.async_client import AsyncWebClient

    host = urlsplit(settings.slack_api_base).netloc or settings.slack_api_base
    client = AsyncWebClient(base_url=settings.slack_api_base, timeout=max(1, int(within)), retry_handlers=[])
    found: list[str] = []
    try:
        if settings.slack_bot_token is not None:
            try:
                auth = await client.auth_test(token=_secret(settings.slack_bot_token).strip())
                found.append(f"the token is @{auth.get('user', '?')} in {auth.get('team', '?')}")
            except SlackApiError as e:
                error = str(e.response.get("error", "?"))
                return Check(
                    "slack",
                    Status.FAIL,
                    f"Slack refused SLACK_BOT_TOKEN ({error}): it was revoked (the app uninstalled?) or "
                    "mistyped — copy the current one (OAuth & Permissions → Bot User OAuth Token)",
                )
        if settings.slack_oauth:
            assert settings.slack_client_id is not None
            try:
                await client.oauth_v2_access(
                    client_id=settings.slack_client_id,
                    client_secret=_secret(settings.slack_client_secret),
                    code="spaces-doctor-probe",
                )
            except SlackApiError as e:
                error = str(e.response.get("error", "?"))
                if error in ("invalid_client_id", "bad_client_secret", "invalid_client"):
                    return Check(
                        "slack",
                        Status.FAIL,
                        f"Slack refused SLACK_CLIENT_ID/SLACK_CLIENT_SECRET ({error}): copy them from "
                        "Basic Information → App Credentials",
                    )
                if error != "invalid_code":
                    return Check("slack", Status.WARN, f"Slack answered oauth.v2.access with {error}")
            found.append("the OAuth credentials are accepted")
    except (TimeoutError, OSError) as e:
        return Check(
            "slack",
            Status.WARN,
            f"the settings look right, but {host} could not be reached ({type(e).__name__}): they could "
            "not be checked — is this machine online (or SLACK_API_BASE right)?",
        )
    except Exception as e:  # aiohttp's errors name the host, never a token (tokens travel in headers)
        return Check("slack", Status.WARN, f"{host} could not be asked ({type(e).__name__})")
    return Check("slack", Status.OK, "Slack accepts the settings: " + "; ".join(found))


def _platform_checks(name: str, problems: list[str], ok: str) -> list[Check]:
    if not problems:
        return [Check(name, Status.OK, ok)]
    return [Check(name, Status.FAIL, p) for p in problems]


async def check_telegram_api(settings: Settings, *, within: float = API_TIMEOUT) -> Check:
    """``getMe`` with the configured token: does Telegram (or TELEGRAM_API_BASE) accept it?"""
    import aiohttp  # the doctor's only HTTP call

    token = _secret(settings.telegram_bot_token).strip()
    mode = f"{settings.telegram_mode} mode"
    host = urlsplit(settings.telegram_api_base).netloc or settings.telegram_api_base
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=within)) as http,
            http.get(f"{settings.telegram_api_base}{token}/getMe") as resp,
        ):
            status = resp.status
            body = await resp.json(content_type=None)
    except TimeoutError:
        return Check(
            "telegram",
            Status.WARN,
            f"the token looks right, but {host} did not answer within {within:g} s: it could not be "
            "checked — is this machine online (or TELEGRAM_API_BASE right)?",
        )
    except aiohttp.ClientError as e:
        # aiohttp's connection errors name the host and port, never the path (the token is in the path)
        return Check(
            "telegram",
            Status.WARN,
            f"the token looks right, but {host} could not be reached ({_first_line(e, token)}): it could "
            "not be checked",
        )
    except ValueError:
        return Check(
            "telegram",
            Status.WARN,
            f"{host} answered, but not as the Bot API does (HTTP {status}) — check TELEGRAM_API_BASE",
        )
    if isinstance(body, dict) and body.get("ok") and isinstance(body.get("result"), dict):
        username = body["result"].get("username") or body["result"].get("first_name") or "?"
        return Check("telegram", Status.OK, f"Telegram accepts the token: this is @{username} ({mode})")
    code = body.get("error_code", status) if isinstance(body, dict) else status
    about = str(body.get("description", "")) if isinstance(body, dict) else ""
    about = _clean(about, token)[:200]
    if code in (401, 404):
        return Check(
            "telegram",
            Status.FAIL,
            f"Telegram refused TELEGRAM_BOT_TOKEN ({code} {about}): it was revoked or mistyped — get the "
            "current one from @BotFather (/mybots → your bot → API Token)",
        )
    return Check("telegram", Status.WARN, f"Telegram answered getMe with {code} {about}".rstrip())


async def check_discord_api(settings: Settings, *, within: float = API_TIMEOUT) -> Check:
    """``GET /users/@me`` and ``/oauth2/applications/@me`` with the configured token: does Discord (or
    DISCORD_API_BASE) accept it, and do DISCORD_APPLICATION_ID and DISCORD_PUBLIC_KEY belong to the same
    application? (A public key of another application makes every interaction sent over HTTP fail with 401.)"""
    import aiohttp  # the doctor's only HTTP calls

    token = _secret(settings.discord_bot_token).strip()
    base = settings.discord_api_base.rstrip("/")
    host = urlsplit(base).netloc or base
    headers = {"Authorization": f"Bot {token}"}
    try:
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=within), headers=headers
        ) as http:
            async with http.get(f"{base}/users/@me") as resp:
                status, me = resp.status, await resp.json(content_type=None)
            app: object = None
            if status == 200:
                async with http.get(f"{base}/oauth2/applications/@me") as resp:
                    app = await resp.json(content_type=None) if resp.status == 200 else None
    except TimeoutError:
        return Check(
            "discord",
            Status.WARN,
            f"the token looks right, but {host} did not answer within {within:g} s: it could not be "
            "checked — is this machine online (or DISCORD_API_BASE right)?",
        )
    except aiohttp.ClientError as e:
        return Check(
            "discord",
            Status.WARN,
            f"the token looks right, but {host} could not be reached ({_first_line(e, token)}): it could "
            "not be checked",
        )
    except ValueError:
        return Check(
            "discord", Status.WARN, f"{host} answered, but not as Discord's API does — check DISCORD_API_BASE"
        )
    if status == 401:
        return Check(
            "discord",
            Status.FAIL,
            "Discord refused DISCORD_BOT_TOKEN (401): it was reset or mistyped — copy the current one "
            "(Developer Portal → your application → Bot → Reset Token)",
        )
    if status != 200 or not isinstance(me, dict):
        return Check("discord", Status.WARN, f"Discord answered GET /users/@me with {status}")
    name = str(me.get("username") or "?")
    problems: list[str] = []
    if isinstance(app, dict):
        app_id, key = str(app.get("id", "")), str(app.get("verify_key", ""))
        if settings.discord_application_id and settings.discord_application_id.strip() != app_id:
            problems.append(f"DISCORD_APPLICATION_ID is not this bot's application ({app_id})")
        if settings.discord_public_key and settings.discord_public_key.strip().lower() != key.lower():
            problems.append(
                "DISCORD_PUBLIC_KEY is not this application's public key: every interaction sent to "
                "/discord/interactions would be refused (General Information → Public Key)"
            )
    if problems:
        return Check(
            "discord", Status.FAIL, f"Discord accepts the token ({name}), but " + "; ".join(problems)
        )
    return Check("discord", Status.OK, f"Discord accepts the token: this is {name}")


def check_secret_lengths(settings: Settings) -> list[Check]:
    """A secret too short to guess-proof is also too short for the log filter to spot reliably."""
    from bots.logs import MIN_SECRET_LENGTH

    names = {
        "telegram_webhook_secret": "TELEGRAM_WEBHOOK_SECRET",
        "slack_signing_secret": "SLACK_SIGNING_SECRET",
        "slack_client_secret": "SLACK_CLIENT_SECRET",
        "metrics_token": "SPACES_METRICS_TOKEN",
    }
    checks = []
    for field, name in names.items():
        value = _secret(getattr(settings, field, None))
        if value and len(value) < MIN_SECRET_LENGTH * 2:
            checks.append(
                Check(
                    "secrets",
                    Status.WARN,
                    f"{name} is only {len(value)} characters long: use a long random value "
                    '(python -c "import secrets; print(secrets.token_urlsafe(32))")',
                )
            )
    return checks


# ---------------------------------------------------------------------------------------------- output


def format_checks(checks: list[Check]) -> list[str]:
    mark = {Status.OK: "✓", Status.WARN: "!", Status.FAIL: "✗"}
    width = max((len(c.name) for c in checks), default=0)
    lines = [f"{mark[c.status]} {c.name:<{width}}  {c.message}" for c in checks]
    failed = sum(c.failed for c in checks)
    warned = sum(c.status is Status.WARN for c in checks)
    if failed:
        lines.append(
            f"{failed} problem{'s' if failed != 1 else ''} to fix"
            + (f", {warned} warning(s)" if warned else "")
        )
    else:
        lines.append(
            "All good" + (f" ({warned} warning{'s' if warned != 1 else ''})" if warned else "") + "."
        )
    return lines


async def run_doctor(settings: Settings | None = None, *, out: TextIO | None = None) -> int:
    """Print every check; 1 if any failed, else 0."""
    out = out or sys.stdout
    if settings is None:
        settings, checks = check_environment()
    else:
        checks = []
    if settings is not None:
        checks = await diagnose(settings)
    out.write("\n".join(format_checks(checks)) + "\n")
    return 1 if any(c.failed for c in checks) else 0


def _first_line(e: BaseException, *secrets: str) -> str:
    text = str(e).strip() or type(e).__name__
    return _clean(text.splitlines()[0][:300], *secrets)


def _clean(text: str, *secrets: str) -> str:
    from bots.logs import Redactor

    return Redactor(secrets).redact(text)
