"""What to say, platform-neutral: a Notice is text plus buttons; adapters render it (pure functions).

Builders take the Space *as it is at send time* (rendered when sent, not when queued), so a title edit or a
reschedule shows up in every later message.

A notice also carries what it says as data: the instant it speaks of (``when``), the exact words that state
that instant in the text (``when_text``) and the Space's status. A platform that shows times natively (each
reader in their own zone) swaps those words for its own markup with :meth:`Notice.with_when`; every other
platform renders the text as it is.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from core.models import DeliveryKind, Space, SpaceStatus, SpaceView
from core.refs import ChatRef
from core.texts import t
from core.timeparse import format_local


class ActionKind(StrEnum):
    URL = "url"  # opens a link
    CALLBACK = "callback"  # comes back to us as a button press: value is "<verb>:<space_id>"


class Verb(StrEnum):
    """Button verbs; ``f"{verb}:{space_id}"`` stays well under Telegram's 64-byte callback_data limit."""

    # each states the result it asks for: a retried or double press lands on the same state, never flips
    # it back (cards from before this rule carry "sub" alone, which now means exactly "subscribe")
    SUBSCRIBE = "sub"
    UNSUBSCRIBE = "unsub"
    START = "start"
    END = "end"
    CANCEL = "cancel"


@dataclass(frozen=True, slots=True)
class Action:
    label: str
    kind: ActionKind
    value: str
    host_only: bool = False  # shown to everyone on a shared card, but only the host/moderators may use it
    share: bool = False  # the link is meant to be passed on (platforms may wrap it in a native share dialog)


@dataclass(frozen=True, slots=True)
class Notice:
    """A message to show. ``title`` and ``lines`` are plain text: adapters escape them for their markup."""

    kind: str
    title: str
    lines: tuple[str, ...] = ()
    actions: tuple[Action, ...] = ()
    space_id: str | None = None
    link: str | None = None
    locale: str = "en"
    marker: str | None = None  # a status badge shown before the title, e.g. "🟣 LIVE"
    # answers (kind "reply"): the message this one answers (its id in the same chat), and whether the
    # reader is asked to answer it back (platforms may open a reply box: Telegram's ForceReply)
    reply_to: str | None = None
    ask: bool = False
    # the aware UTC instant the notice speaks of: the Space's start (the actual one once started)
    when: datetime | None = None
    # the words of title or lines that state ``when`` in the text's own zone, exactly as they appear there
    # (None when the text states no time); the last occurrence is the one meant (a title may quote it)
    when_text: str | None = None
    status: SpaceStatus | None = None
    ephemeral: bool = False  # an answer meant only for the asker (platforms that can show it privately)
    # the voice or stage channel the Space is held in (None: none linked): a platform that can open it
    # offers "Join voice" while the Space is live
    voice: ChatRef | None = None

    def plain(self) -> str:
        """Everything as plain text (console, logs, notification previews)."""
        head = f"{self.marker} {self.title}" if self.marker else self.title
        return "\n".join([head, *self.lines])

    def with_when(self, render: Callable[[datetime], str]) -> Notice:
        """The notice with its stated time replaced by ``render(when)`` (e.g. Discord's ``<t:…:F>``).

        Replaces the LAST occurrence of ``when_text``, searching the lines from the end, then the title:
        every text states the time after the title, so a title quoting the time is left alone. The result
        states no time as data any more (``when_text`` None). Unchanged when there is nothing to replace."""
        if self.when is None or not self.when_text:
            return self
        native = render(self.when)
        lines = list(self.lines)
        for i in range(len(lines) - 1, -1, -1):
            if self.when_text in lines[i]:
                lines[i] = _replace_last(lines[i], self.when_text, native)
                return replace(self, lines=tuple(lines), when_text=None)
        if self.when_text in self.title:
            return replace(self, title=_replace_last(self.title, self.when_text, native), when_text=None)
        return self


def _replace_last(text: str, old: str, new: str) -> str:
    head, _, tail = text.rpartition(old)
    return f"{head}{new}{tail}"


def callback(verb: Verb, space_id: str) -> str:
    return f"{verb}:{space_id}"


def parse_callback(value: str) -> tuple[Verb, str] | None:
    """Inverse of :func:`callback`; None for anything we did not produce (hostile or stale buttons)."""
    verb, _, space_id = value.partition(":")
    try:
        return Verb(verb), space_id
    except ValueError:
        return None


def _when(view: SpaceView, locale: str) -> str:
    return format_local(view.space.starts_at, view.zone or view.space.tz, locale)


def _start(space: Space) -> datetime:
    """The start a notice speaks of: the actual one once the Space started, else the scheduled one."""
    return space.started_at or space.starts_at


def _delayed(late_by: float | None, locale: str) -> tuple[str, ...]:
    # anything more than a minute late says so, visibly: users must not mistake a catch-up for news
    if late_by is None or late_by < 60:
        return ()
    return (t(locale, "notice.delayed", minutes=max(1, round(late_by / 60))),)


def card(view: SpaceView, host_name: str, locale: str) -> Notice:
    """The public card of a Space, in every state. Edited in place as the Space changes."""
    s = view.space
    lines: list[str] = []
    actions: list[Action] = []
    marker: str | None = None
    if s.status is SpaceStatus.SCHEDULED:
        lines += [
            t(locale, "card.scheduled", when=_when(view, locale)),
            t(locale, "card.host", host=host_name),
        ]
        lines.append(t(locale, "card.subscribers", count=view.subscribers))
        actions += [
            Action(t(locale, "button.subscribe"), ActionKind.CALLBACK, callback(Verb.SUBSCRIBE, s.id)),
            Action(t(locale, "button.unsubscribe"), ActionKind.CALLBACK, callback(Verb.UNSUBSCRIBE, s.id)),
            Action(t(locale, "button.share"), ActionKind.URL, view.link, share=True),
            Action(
                t(locale, "button.start"), ActionKind.CALLBACK, callback(Verb.START, s.id), host_only=True
            ),
        ]
    elif s.status is SpaceStatus.LIVE:
        marker = t(locale, "card.live")
        lines += [t(locale, "card.host", host=host_name)]
        actions += [
            Action(t(locale, "button.join"), ActionKind.URL, view.link),
            Action(t(locale, "button.end"), ActionKind.CALLBACK, callback(Verb.END, s.id), host_only=True),
        ]
    elif s.status is SpaceStatus.ENDED:
        marker = t(locale, "card.ended")
        lines += [t(locale, "card.host", host=host_name)]
        actions += [Action(t(locale, "button.details"), ActionKind.URL, view.link)]
    else:
        marker = t(locale, "card.cancelled")
        lines += [t(locale, "card.scheduled", when=_when(view, locale))]
    if s.description:
        lines.insert(0, s.description)
    shows_time = s.status in (SpaceStatus.SCHEDULED, SpaceStatus.CANCELLED)
    return Notice(
        kind="card",
        title=s.title,
        lines=tuple(lines),
        actions=tuple(actions),
        space_id=s.id,
        link=view.link,
        locale=locale,
        marker=marker,
        when=_start(s),
        when_text=_when(view, locale) if shows_time else None,
        status=s.status,
        voice=s.voice,
    )


REPLY = "reply"  # Notice.kind of an answer (see :func:`reply`)


def reply(
    text: str,
    *,
    locale: str = "en",
    reply_to: str | None = None,
    ask: bool = False,
    actions: tuple[Action, ...] = (),
    when: datetime | None = None,
    when_text: str | None = None,
    status: SpaceStatus | None = None,
    ephemeral: bool = False,
) -> Notice:
    """An answer to someone who wrote to us: plain text (`code` spans allowed), no title, maybe buttons.
    ``when_text``, if given, must appear in ``text`` (it states ``when``)."""
    return Notice(
        kind=REPLY,
        title="",
        lines=tuple(text.split("\n")),
        actions=actions,
        locale=locale,
        reply_to=reply_to,
        ask=ask,
        when=when,
        when_text=when_text,
        status=status,
        ephemeral=ephemeral,
    )


def problem_payload(key: str, params: Mapping[str, str]) -> str:
    """What a HOST_PROBLEM row carries: the problem's text key and parameters (rendered at send time, in the
    host's language then)."""
    return json.dumps({"key": key, "params": dict(params)}, sort_keys=True, ensure_ascii=False)


def _problem(payload: str | None, locale: str) -> str:
    try:
        data = json.loads(payload or "")
        key, params = str(data["key"]), {str(k): str(v) for k, v in dict(data["params"]).items()}
    except (ValueError, KeyError, TypeError):
        return t(locale, "audio.problem.source", detail="?")
    return t(locale, key, **params)


def _host_only(host_link: str | None, locale: str) -> tuple[str, ...]:
    return (t(locale, "reply.host_link", link=host_link),) if host_link else ()


def for_delivery(
    kind: DeliveryKind,
    view: SpaceView,
    host_name: str,
    locale: str,
    late_by: float | None,
    *,
    host_link: str | None = None,
    payload: str | None = None,
) -> Notice:
    """The DM (or mention text) for a user-facing delivery kind.

    ``host_link``: the host's private page (core.hostlink), added to the host's own reminders — pass it only
    for a DM to the host, never for a mention in a chat. ``payload``: a HOST_PROBLEM row's (problem_payload)."""
    s = view.space
    when = _when(view, locale)
    link_action = Action(t(locale, "button.details"), ActionKind.URL, view.link)
    if kind is DeliveryKind.HOST_PROBLEM:
        return Notice(
            kind=kind,
            title=t(locale, "notice.host_problem", title=s.title, detail=_problem(payload, locale)),
            lines=(t(locale, "notice.host_problem_hint", space_id=s.id),),
            actions=(link_action,),
            space_id=s.id,
            link=view.link,
            locale=locale,
            status=s.status,
        )
    if kind is DeliveryKind.HOST_T30:
        lines = (t(locale, "notice.host_hint"), *_host_only(host_link, locale), *_delayed(late_by, locale))
        return Notice(
            kind=kind,
            title=t(locale, "notice.host_t30", title=s.title, when=when),
            lines=lines,
            actions=(
                Action(t(locale, "button.start"), ActionKind.CALLBACK, callback(Verb.START, s.id)),
                link_action,
            ),
            space_id=s.id,
            link=view.link,
            locale=locale,
            when=_start(s),
            when_text=when,
            status=s.status,
        )
    if kind is DeliveryKind.HOST_T0:
        lines = (t(locale, "notice.host_hint"), *_host_only(host_link, locale), *_delayed(late_by, locale))
        return Notice(
            kind=kind,
            title=t(locale, "notice.host_t0", title=s.title),
            lines=lines,
            actions=(
                Action(t(locale, "button.start"), ActionKind.CALLBACK, callback(Verb.START, s.id)),
                link_action,
            ),
            space_id=s.id,
            link=view.link,
            locale=locale,
            when=_start(s),
            when_text=None,
            status=s.status,
        )
    if kind is DeliveryKind.LIVE_NOTICE:
        return Notice(
            kind=kind,
            title=t(locale, "notice.live", title=s.title, host=host_name),
            lines=_delayed(late_by, locale),
            actions=(Action(t(locale, "button.listen"), ActionKind.URL, view.link),),
            space_id=s.id,
            link=view.link,
            locale=locale,
            when=_start(s),
            when_text=None,
            status=s.status,
            marker=None,
            voice=s.voice,
        )
    if kind is DeliveryKind.CANCELLED_NOTICE:
        return Notice(
            kind=kind,
            title=t(locale, "notice.cancelled", title=s.title, when=when),
            lines=_delayed(late_by, locale),
            space_id=s.id,
            link=view.link,
            locale=locale,
            when=_start(s),
            when_text=when,
            status=s.status,
        )
    if kind is DeliveryKind.RESCHEDULED_NOTICE:
        return Notice(
            kind=kind,
            title=t(locale, "notice.rescheduled", title=s.title, when=when),
            lines=_delayed(late_by, locale),
            actions=(link_action,),
            space_id=s.id,
            link=view.link,
            locale=locale,
            when=_start(s),
            when_text=when,
            status=s.status,
        )
    raise ValueError(f"{kind} is not a user notice")
