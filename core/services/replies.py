"""Answers to inbound events, through the outbox: durable, paced and retried like every other send.

An adapter handles an inbound event (a Telegram update, an interaction …) in three steps:

1. :meth:`RepliesService.already_handled` — skip an event a previous attempt (this process before a crash,
   or another web process) finished: platforms deliver at least once.
2. The effect, through the core services, idempotent on the event (schedule and manage remember the
   event's request id in their own transaction; subscribing sets a state).
3. :meth:`RepliesService.finish` — in ONE transaction: the event is marked handled and its answers become
   ``reply`` rows keyed ``reply:<event key>:<n>``. Only then does the adapter confirm the event to the
   platform (the long-polling offset, the webhook's 200).

A crash anywhere before 3 commits means the platform delivers the event again; the effect is found done,
the same answers are queued once. A crash after 3 is harmless: the event is skipped. The delivery engine
sends the rows under the shared send budget (:func:`send_reply`), retrying rate limits and outages — an
answer is never dropped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.models import Delivery, DeliveryKind, SpaceStatus
from core.notices import REPLY, Action, ActionKind, Notice
from core.ports import ChatPlatform, Clock, UnitOfWorkFactory, WakeUps
from core.refs import ChatRef, MessageRef, Platform, parse_chat, parse_message

HANDLED = "handled"  # the inbound-request result of an event whose answers are queued
_VERSION = 1


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer an adapter decided on: where, and what (a :func:`core.notices.reply` notice)."""

    chat: ChatRef
    notice: Notice
    # the asker must not miss it (a refusal, an undone reminder): a platform that shows ephemeral answers
    # as fleeting toasts shows this one as a dialog instead (Telegram's show_alert)
    alert: bool = False


def reply_key(event_key: str, n: int) -> str:
    """The outbox key of the ``n``-th answer (0-based) to an inbound event."""
    return f"reply:{event_key}:{n}"


def handled_key(event_key: str) -> str:
    """The inbound request id that marks an event as handled (its effects done, its answers queued)."""
    return f"{event_key}:{HANDLED}"


# --------------------------------------------------------------------------- payload (platform-neutral)


def to_payload(notice: Notice) -> str:
    """A reply notice as stored in ``delivery.payload``: JSON, versioned, everything needed to render it."""
    body: dict[str, Any] = {
        "v": _VERSION,
        "lines": list(notice.lines),
        "locale": notice.locale,
        "actions": [
            {"label": a.label, "kind": str(a.kind), "value": a.value, "share": a.share}
            for a in notice.actions
        ],
    }
    if notice.reply_to is not None:
        body["reply_to"] = notice.reply_to
    if notice.ask:
        body["ask"] = True
    # the stated time as data (optional keys: rows written before them read back as plain text)
    if notice.when is not None:
        body["when"] = notice.when.isoformat()
    if notice.when_text is not None:
        body["when_text"] = notice.when_text
    if notice.status is not None:
        body["status"] = str(notice.status)
    if notice.ephemeral:
        body["ephemeral"] = True
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def from_payload(payload: str | None) -> Notice:
    """Inverse of :func:`to_payload`. Raises ValueError for anything else (the row is dead-lettered)."""
    if not payload:
        raise ValueError("a reply without content")
    try:
        body = json.loads(payload)
        if not isinstance(body, dict) or body.get("v") != _VERSION:
            raise ValueError(
                f"unknown reply payload version {body.get('v') if isinstance(body, dict) else '?'}"
            )
        lines = tuple(str(line) for line in body["lines"])
        actions = tuple(
            Action(str(a["label"]), ActionKind(a["kind"]), str(a["value"]), share=bool(a.get("share")))
            for a in body.get("actions", [])
        )
        reply_to = body.get("reply_to")
        when = body.get("when")
        status = body.get("status")
        return Notice(
            kind=REPLY,
            title="",
            lines=lines,
            actions=actions,
            locale=str(body.get("locale") or "en"),
            reply_to=None if reply_to is None else str(reply_to),
            ask=bool(body.get("ask", False)),
            when=None if when is None else _aware(datetime.fromisoformat(str(when))),
            when_text=None if body.get("when_text") is None else str(body["when_text"]),
            status=None if status is None else SpaceStatus(status),
            ephemeral=bool(body.get("ephemeral", False)),
        )
    except (KeyError, TypeError, AttributeError, RecursionError) as e:
        raise ValueError(f"malformed reply payload: {e!r}") from e


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("a reply's time without a zone")
    return at.astimezone(UTC)


async def send_reply(platform: ChatPlatform, row: Delivery, *, key: str) -> MessageRef:
    """The delivery engine's send for a ``reply`` row: post its stored content in its chat.

    Raises ValueError for a row that can never be sent (bad recipient or payload), else what
    :meth:`ChatPlatform.post` raises (RateLimited, ChatUnavailable, TransientError …)."""
    return await platform.post(parse_chat(row.recipient), from_payload(row.payload), key=key)


# --------------------------------------------------------------------------- the service


class RepliesService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        wake: WakeUps,
        *,
        read_uow: UnitOfWorkFactory | None = None,
    ) -> None:
        self._uow = uow
        self._read = read_uow or uow
        self._clock = clock
        self._wake = wake

    @property
    def uow(self) -> UnitOfWorkFactory:
        """The database answers are written to: the inbound path keeps its conversations there too."""
        return self._uow

    async def already_handled(self, platform: Platform, event_key: str) -> bool:
        """Whether :meth:`finish` committed for this event (in any process). Raises if the database fails:
        the caller must then not confirm the event."""
        async with self._read() as uow:
            return await uow.inbound.recall(platform, handled_key(event_key)) is not None

    async def finish(self, platform: Platform, event_key: str, answers: Sequence[Answer]) -> bool:
        """Mark the event handled and queue its answers, in one transaction. Returns False (and queues
        nothing) if another attempt finished it first: each event is answered once, whoever got there."""
        now = self._clock.now()
        rows = [
            Delivery(
                key=reply_key(event_key, n),
                kind=DeliveryKind.REPLY,
                platform=a.chat.platform,
                recipient=str(a.chat),
                space_id=None,
                revision=0,
                due_at=now,
                payload=to_payload(a.notice),
            )
            for n, a in enumerate(answers)
        ]
        async with self._uow() as uow:
            if await uow.inbound.remember(platform, handled_key(event_key), HANDLED) is not None:
                return False
            await uow.deliveries.add(rows)
            await uow.commit()
        if rows:
            self._wake.arm(now)
        return True

    async def sent_message(self, key: str) -> MessageRef | None:
        """The message an answer became, once the engine recorded it (None before, or if it failed)."""
        async with self._read() as uow:
            row = await uow.deliveries.get_by_key(key)
        if row is None or not row.sent_ref:
            return None
        try:
            return parse_message(row.sent_ref)
        except ValueError:
            return None
