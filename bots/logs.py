"""Logging for every ``spaces`` process: one line per record, ``key=value`` extras, and no secret in any line.

Secrets are kept out twice:

1. **At the source.** The libraries that print request URLs or parameters are held above the level where they
   do: httpx logs every request URL at INFO, and a Bot API URL carries the bot token
   (``https://api.telegram.org/bot<token>/sendMessage``); python-telegram-bot logs its base URL (token
   included) and every call's parameters (a webhook's ``secret_token``) at DEBUG. See :data:`LIBRARY_FLOORS`.
   ``SPACES_LOG_LEVEL=DEBUG`` lowers our own loggers, never these floors.
2. **On the way out.** :class:`Redactor`, a filter on every handler :func:`configure_logging` installs, replaces
   each configured secret (bot tokens, webhook and signing secrets, the database password, the metrics token)
   and anything shaped like a credential (a Bot API token in a URL, a Slack token, a URL's password, a bearer
   header) — in the message, its arguments, the ``extra`` fields, the exception text and the traceback.

``SPACES_LOG_FILE`` adds a second destination (``{pid}`` in the name becomes the process id), so that a test
session can read what every process it spawned logged, and check it (tests/conftest.py).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final, TextIO

#: Minimum level of loggers that print secrets below it. Applied whatever SPACES_LOG_LEVEL says.
LIBRARY_FLOORS: Final[dict[str, int]] = {
    "httpx": logging.WARNING,  # INFO: "HTTP Request: POST https://api.telegram.org/bot<token>/…"
    "httpcore": logging.WARNING,  # DEBUG: connection and header traces
    "telegram": logging.INFO,  # DEBUG: "Set Bot API URL: …/bot<token>", call parameters (secret_token)
    "hpack": logging.WARNING,  # DEBUG: HTTP/2 header blocks (Authorization)
    "aiohttp.access": logging.WARNING,
    "alembic": logging.WARNING,
    # DEBUG: every Web API request and response body (oauth.v2.access answers a bot token; the code)
    "slack_sdk": logging.INFO,
    # DEBUG: every inbound payload (response_url, a bearer URL; the deprecated verification token)
    "slack_bolt": logging.INFO,
}

REDACTED: Final = "[redacted]"
# Shorter configured values are not replaced one by one (a 3-letter secret would blank every word containing
# it); the credential patterns below still apply, and `spaces doctor` warns about such short secrets.
MIN_SECRET_LENGTH: Final = 6

# Credential shapes, whether configured here or not (another bot's token in an error message is a leak too).
_PATTERNS: Final = (
    # a Telegram bot token: digits, a colon, 30+ URL-safe characters (alone or in /bot<token>/ URLs)
    (re.compile(r"(?<![0-9])\d{3,20}:[A-Za-z0-9_-]{30,}"), REDACTED),
    # Slack tokens: xoxb-, xoxp-, xoxa-, xoxr-, xoxs-, xapp-
    (re.compile(r"\bx(?:ox[abprs]|app)-[A-Za-z0-9-]{6,}"), REDACTED),
    # the password in a URL: scheme://user:password@host
    (re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]*:)[^\s@/]+@"), rf"\1{REDACTED}@"),
    # a Discord bot token (three dot-separated base64url parts), or any JWT-like triple
    (re.compile(r"\b[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{20,}"), REDACTED),
    # an Authorization header's credential, and bearer tokens wherever they are quoted
    (
        re.compile(r"(\bAuthorization['\"]?\s*[:=]\s*['\"]?(?:\w+\s+)?)[^\s'\",]+", re.IGNORECASE),
        rf"\1{REDACTED}",
    ),
    (re.compile(r"(\bBearer\s+)[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE), rf"\1{REDACTED}"),
)

# LogRecord attributes that are not ``extra`` fields
_STANDARD: Final = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class Redactor(logging.Filter):
    """A handler filter: rewrites each record so that no secret reaches the handler's output.

    The record is changed in place (its message is formatted once, with secrets replaced), so every later
    handler of the same record sees the clean version as well."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: tuple[str, ...] = ()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Also replace these values (blank, ``None`` or short values are ignored)."""
        found = {s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}
        # longest first: a secret that contains another is replaced whole
        self._secrets = tuple(sorted(found | set(self._secrets), key=len, reverse=True))

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: show it raw rather than lose the record
            message = f"{record.msg!r} % {record.args!r}"
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
            # the formatted (clean) text is what handlers print; the live exception object could be
            # formatted again by a handler that ignores exc_text
            record.exc_info = None
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and value is not None and not isinstance(value, int | float | bool):
                record.__dict__[key] = self.redact(str(value))
        return True


class KeyValueFormatter(logging.Formatter):
    """``time level logger message key=value …``: the ``extra={...}`` fields (space_id, delivery_id, key)
    are appended, so a grep for ``space_id=abc`` finds a Space's whole story."""

    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        if not extras:
            return base
        pairs = " ".join(f"{k}={_kv(v)}" for k, v in sorted(extras.items()))
        head, sep, tail = base.partition("\n")  # keep tracebacks after the key=values
        return f"{head} {pairs}{sep}{tail}"


def _kv(value: Any) -> str:
    text = str(value)
    return repr(text) if (not text or any(c.isspace() or c in "\"'=" for c in text)) else text


FORMAT: Final = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def log_file_path(template: str, pid: int | None = None) -> Path:
    """``SPACES_LOG_FILE`` with ``{pid}`` replaced: several processes can share one setting."""
    return Path(template.replace("{pid}", str(os.getpid() if pid is None else pid))).expanduser()


def configure_logging(
    level: str,
    stream: TextIO | None = None,
    *,
    secrets: Iterable[str] = (),
    log_file: str | None = None,
) -> Redactor:
    """Send every record at ``level`` and above to ``stream`` (stderr), and to ``log_file`` if given, through
    one :class:`Redactor` that knows ``secrets``. Replaces the root logger's handlers. Returns the redactor
    (``bots.cli`` also cleans the error lines it prints with it)."""
    redactor = Redactor(secrets)
    formatter = KeyValueFormatter(FORMAT)
    handlers: list[logging.Handler] = [logging.StreamHandler(stream or sys.stderr)]
    if log_file:
        path = log_file_path(log_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(path, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(redactor)
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel(level)
    hold_libraries(root.level)
    return redactor


def hold_libraries(level: int = logging.NOTSET) -> None:
    """Apply :data:`LIBRARY_FLOORS` (a library logger never goes below its floor, whatever ``level``)."""
    for name, floor in LIBRARY_FLOORS.items():
        logging.getLogger(name).setLevel(max(floor, level))


def settings_secrets(settings: Any) -> list[str]:
    """Every secret a :class:`config.settings.Settings` holds: its ``SecretStr`` fields and the database
    password (typed ``Any``: this module is imported before the settings are read)."""
    found: list[str] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name, None)
        getter = getattr(value, "get_secret_value", None)
        if callable(getter):
            found.append(str(getter()))
    url = str(getattr(settings, "database_url", "") or "")
    match = re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]*:([^\s@/]+)@", url)
    if match:
        from urllib.parse import unquote

        found += [match.group(1), unquote(match.group(1))]
    return [s for s in found if s]
