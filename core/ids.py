"""Space ids: short enough for a link and a Telegram deep-link payload, long enough not to be guessed."""

from __future__ import annotations

import secrets

# no 0/o, 1/l/i: ids get read aloud and typed from screenshots
ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"
LENGTH = 10  # 31**10 ≈ 8e14 (≈ 49 bits): not enumerable through rate-limited endpoints


def new_space_id() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def looks_like_space_id(text: str) -> bool:
    return len(text) == LENGTH and all(c in ALPHABET for c in text)


HOST_KEY_LENGTH = 32  # letters and digits: ≈ 190 bits — a password, never shown publicly


def new_host_key() -> str:
    """The secret of a Space's private host page (the browser microphone): only ever sent to the host.

    ``secrets.token_urlsafe`` without its ``-`` and ``_``: chat markups escape those (Discord and Telegram
    Markdown turn ``_`` into ``\\_``), which would break the link a host taps."""
    key = ""
    while len(key) < HOST_KEY_LENGTH:
        key += "".join(c for c in secrets.token_urlsafe(HOST_KEY_LENGTH) if c.isalnum())
    return key[:HOST_KEY_LENGTH]
