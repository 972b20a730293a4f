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


# Link codes (core.ports.OneTimeCodes, ``short``): typed by a moderator in another chat, maybe on a phone.
# Crockford's base32: no I, L, O, U — read as 1, 1 and 0 when typed anyway, so a code read aloud or retyped
# from a screenshot still works.
SHORT_CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
SHORT_CODE_LENGTH = 10  # 32**10 = 2**50
_READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})


def new_short_code() -> str:
    """``XXXXX-XXXXX``: 10 random characters of :data:`SHORT_CODE_ALPHABET` (50 bits)."""
    chars = "".join(secrets.choice(SHORT_CODE_ALPHABET) for _ in range(SHORT_CODE_LENGTH))
    return f"{chars[:5]}-{chars[5:]}"


def normal_short_code(code: str) -> str | None:
    """A short code as typed (any case, dashes and spaces anywhere, O for 0, I or L for 1) → its 10
    canonical characters, or None if it cannot be one."""
    if not isinstance(code, str) or len(code) > 40:
        return None
    flat = code.upper().replace("-", "").replace(" ", "").translate(_READ_AS)
    if len(flat) != SHORT_CODE_LENGTH or any(c not in SHORT_CODE_ALPHABET for c in flat):
        return None
    return flat
