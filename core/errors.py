"""Errors the outside world can act on.

``UserError`` carries a text key and its parameters rather than a sentence, so that the adapter shows it in
the *user's* language (``texts.render(locale, err.key, **err.params)``). Delivery errors are raised by
platform adapters and mapped by the engine to retry, fallback or dead-letter.
"""

from __future__ import annotations

from typing import Any


class SpacesError(Exception):
    """Base of every error this project raises on purpose."""


# the inputs an error can be about, as a form (a Discord modal, a Slack dialog) names its fields
FIELDS = ("title", "when", "timezone", "description", "voice", "source")


class UserError(SpacesError):
    """Something the user asked for cannot be done; ``key`` names the explanation in core.texts.

    ``field`` names the input at fault (one of :data:`FIELDS`), so a form can show the error next to it;
    None when no single input is (a quota, a permission, a state). Each family has its usual field
    (``FIELD``); a raise site that knows better passes ``field=``."""

    FIELD: str | None = None

    def __init__(self, key: str, *, field: str | None = None, **params: Any) -> None:
        super().__init__(key, params)
        self.key = key
        self.params = params
        self.field = field if field is not None else self.FIELD
        if self.field is not None and self.field not in FIELDS:
            raise ValueError(f"not a field: {self.field!r}")

    def __str__(self) -> str:  # for logs; users see the translated text
        return f"{self.key} {self.params}"


class InvalidTitle(UserError):
    FIELD = "title"


class InvalidTime(UserError):
    """Unreadable, past, too far ahead, non-existent or ambiguous local time, unknown zone."""

    FIELD = "when"


class TooManySpaces(UserError):
    pass


class NotAllowed(UserError):
    pass


class NotFound(UserError):
    pass


class WrongState(UserError):
    """E.g. starting a Space that was cancelled."""


# --- raised by ChatPlatform implementations, handled by the delivery engine ---


class DeliveryError(SpacesError):
    """A send failed. Subclasses tell the engine what to do next."""


class RateLimited(DeliveryError):
    """The platform asked us to wait ``retry_after`` seconds. Not the recipient's fault: no attempt is counted."""

    def __init__(self, retry_after: float, detail: str = "") -> None:
        super().__init__(f"rate limited, retry after {retry_after:.1f}s {detail}".strip())
        self.retry_after = retry_after


class RecipientUnreachable(DeliveryError):
    """The user cannot be DMed (closed DMs, bot blocked, never opened the bot). Fall back, never retry."""


class ChatUnavailable(DeliveryError):
    """The chat or message is gone or the bot lost access. Permanent for this delivery."""


class TransientError(DeliveryError):
    """Timeouts, 5xx: retry with backoff."""
