"""Sample data shared by the storage tests and the store contract suite: one Telegram Space and its rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from core.models import Delivery, DeliveryKind, Space
from core.refs import ChatRef, Platform, UserRef

T0 = datetime(2026, 3, 14, 18, 30, tzinfo=UTC)
LEASE = timedelta(minutes=2)
HOST = UserRef(Platform.TELEGRAM, "1001")
CHAT = ChatRef(Platform.TELEGRAM, "-100200")
OTHER_CHAT = ChatRef(Platform.TELEGRAM, "-100300")


def space(space_id: str = "sp1", **overrides: Any) -> Space:
    """A scheduled Space starting at T0 (any field can be overridden)."""
    fields: dict[str, Any] = {
        "id": space_id,
        "title": "Friday jam",
        "host": HOST,
        "chat": CHAT,
        "starts_at": T0,
        "tz": "Europe/Paris",
        "locale": "fr",
        "created_at": T0 - timedelta(hours=8),
    }
    fields.update(overrides)
    return Space(**fields)


def row(space_id: str, key: str, due_at: datetime = T0, **overrides: Any) -> Delivery:
    """A pending live notice to ``telegram:user:<key>``."""
    fields: dict[str, Any] = {
        "key": key,
        "kind": DeliveryKind.LIVE_NOTICE,
        "platform": Platform.TELEGRAM,
        "recipient": f"telegram:user:{key}",
        "space_id": space_id,
        "revision": 1,
        "due_at": due_at,
    }
    fields.update(overrides)
    return Delivery(**fields)


def row_id(d: Delivery) -> int:
    assert d.id is not None
    return d.id
