"""One contract for every ChatPlatform (core.ports.ChatPlatform): the in-memory fake, the console,
Telegram through the real python-telegram-bot against the Bot API emulator, and Discord through the real
discord.py against its emulator. An adapter that passes it is
one the delivery engine can trust: handles are returned (never None), a no-op edit succeeds, closed DMs
raise RecipientUnreachable, a chat the bot lost raises ChatUnavailable, and stop() is idempotent."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from bots.console.adapter import ConsolePlatform
from bots.telegram.adapter import TelegramConfig, TelegramPlatform
from bots.telegram.translate import chat_ref, user_ref
from core.errors import ChatUnavailable, RecipientUnreachable
from core.models import EventSpec, EventStatus
from core.notices import Action, ActionKind, Notice
from core.ports import ChatPlatform, NativeEvents
from core.refs import ChatRef, Platform, UserRef
from core.services.profiles import ProfileService
from core.services.replies import RepliesService
from core.services.spaces import SpaceService
from tests.fakes.clock import FakeClock, RecordingWake
from tests.fakes.memory import MemoryDB
from tests.fakes.platform import FakePlatform
from tests.fakes.telegram import TelegramEmulator

NOTICE = Notice(
    kind="card",
    title="<b>Weekly</b> AMA & @everyone",
    lines=("🗓 Thu 26 Nov 2026, 20:00 CET", "line with `code`"),
    actions=(
        Action("🔔 Set reminder", ActionKind.CALLBACK, "sub:abcdefghjk"),
        Action("Share", ActionKind.URL, "https://spaces.example/s/abcdefghjk", share=True),
    ),
    space_id="abcdefghjk",
    link="https://spaces.example/s/abcdefghjk",
)
LIVE = Notice(kind="card", title="Weekly AMA", marker="🟣 LIVE", space_id="abcdefghjk")


@dataclass
class Subject:
    platform: ChatPlatform
    chat: ChatRef
    reachable: UserRef
    unreachable: UserRef | None  # None: the platform has no closed DMs (the console)
    lose_chat: Callable[[], Awaitable[None]] | None  # makes the bot lose ``chat``; None: it cannot happen


async def _fake() -> AsyncIterator[Subject]:
    p = FakePlatform()
    chat = ChatRef(Platform.CONSOLE, "main")
    closed = UserRef(Platform.CONSOLE, "closed")
    p.closed_dms.add(closed)

    async def lose() -> None:
        p.gone_chats.add(chat)

    yield Subject(p, chat, UserRef(Platform.CONSOLE, "alice"), closed, lose)


async def _console() -> AsyncIterator[Subject]:
    yield Subject(
        ConsolePlatform(io.StringIO()),
        ChatRef(Platform.CONSOLE, "main"),
        UserRef(Platform.CONSOLE, "alice"),
        None,
        None,
    )


async def _telegram() -> AsyncIterator[Subject]:
    db = MemoryDB()
    clock = FakeClock()
    spaces = SpaceService(db.uow, clock, RecordingWake())

    class Links:
        def space(self, space_id: str) -> str:
            return f"https://spaces.example/s/{space_id}"

    async with TelegramEmulator() as tg:
        alice = tg.create_user("Alice", started=True)
        stranger = tg.create_user("Sam")  # never opened the bot
        group = tg.create_group("Builders", members=[alice])
        p = TelegramPlatform(
            TelegramConfig(token=tg.token, api_base=tg.base_url, file_base=tg.base_file_url),
            spaces=spaces,
            profiles=ProfileService(db.uow),
            replies=RepliesService(db.uow, clock, RecordingWake()),
            links=Links(),
            clock=clock,
            receive=False,
        )

        async def lose() -> None:
            await tg.kick_bot(group)

        yield Subject(p, chat_ref(group.id), user_ref(alice.id), user_ref(stranger.id), lose)


async def _discord() -> AsyncIterator[Subject]:
    from bots.discord.adapter import DiscordConfig, DiscordPlatform
    from tests.fakes.discord import DiscordEmulator, Perm, pointed_at

    async with DiscordEmulator() as dc:
        with pointed_at(dc):
            guild = dc.create_guild("Builders")
            (text,) = guild.channels.values()
            alice = dc.add_member(guild, "alice")
            sam = dc.add_member(guild, "sam")
            dc.close_dms(sam)
            chat = ChatRef(Platform.DISCORD, str(text.id), scope=str(guild.id))
            p = DiscordPlatform(DiscordConfig(token=dc.token, guild_ready_timeout=0.05), receive=False)

            async def lose() -> None:
                # the bot's rights taken away: the channel hidden from it, and no more Manage Events
                dc.set_overwrite(text, dc.bot_role(guild), deny=Perm.VIEW_CHANNEL)
                dc.bot_role(guild).permissions = 0

            yield Subject(
                p,
                chat,
                UserRef(Platform.DISCORD, str(alice.user.id)),
                UserRef(Platform.DISCORD, str(sam.user.id)),
                lose,
            )


async def _slack() -> AsyncIterator[Subject]:
    from bots.slack.adapter import SlackPlatform
    from bots.slack.workspaces import Workspaces
    from tests.fakes.slack import SlackEmulator

    class Links:
        def space(self, space_id: str) -> str:
            return f"https://spaces.example/s/{space_id}"

    async with SlackEmulator() as emu:
        team = emu.create_workspace("Builders")
        alice, sam = emu.add_user(team, "alice"), emu.add_user(team, "sam")
        emu.deactivate(sam)
        chan = emu.add_channel(team, "general", [alice])
        p = SlackPlatform(Workspaces(api_base=emu.api_base, token=emu.bot_token(team)), links=Links())

        async def lose() -> None:
            emu.remove_bot_from(chan)

        yield Subject(
            p,
            ChatRef(Platform.SLACK, chan.id, scope=team.id),
            UserRef(Platform.SLACK, alice.id, scope=team.id),
            UserRef(Platform.SLACK, sam.id, scope=team.id),
            lose,
        )


@pytest.fixture(params=["fake", "console", "telegram", "discord", "slack"])
async def subject(request: pytest.FixtureRequest) -> AsyncIterator[Subject]:
    factory = {
        "fake": _fake,
        "console": _console,
        "telegram": _telegram,
        "discord": _discord,
        "slack": _slack,
    }[request.param]
    async for s in factory():
        await s.platform.start()
        try:
            yield s
        finally:
            await s.platform.stop()


async def test_post_returns_a_handle_in_that_chat(subject: Subject) -> None:
    ref = await subject.platform.post(subject.chat, NOTICE, key="k1")
    assert ref is not None and ref.platform is subject.chat.platform and ref.chat == subject.chat


async def test_edits_succeed_also_when_nothing_changes(subject: Subject) -> None:
    ref = await subject.platform.post(subject.chat, NOTICE, key="k2")
    await subject.platform.edit(ref, LIVE)
    await subject.platform.edit(ref, LIVE)  # Telegram: "message is not modified" — still a success


async def test_direct_reaches_a_reachable_user(subject: Subject) -> None:
    ref = await subject.platform.direct(subject.reachable, NOTICE, key="k3")
    assert ref is not None and ref.platform is subject.reachable.platform


async def test_closed_dms_raise_recipient_unreachable(subject: Subject) -> None:
    if subject.unreachable is None:
        assert isinstance(subject.platform, ConsolePlatform)  # everyone can be reached in a terminal
        return
    with pytest.raises(RecipientUnreachable):
        await subject.platform.direct(subject.unreachable, NOTICE, key="k4")


async def test_mentions_many_users_in_one_message(subject: Subject) -> None:
    users = {subject.reachable: "Alice <3"}
    if subject.unreachable is not None:
        users[subject.unreachable] = "Sam & co"
    ref = await subject.platform.mention(subject.chat, users, NOTICE, key="k5")
    assert ref.chat == subject.chat


async def test_a_lost_chat_raises_chat_unavailable(subject: Subject) -> None:
    if subject.lose_chat is None:
        assert isinstance(subject.platform, ConsolePlatform)
        return
    await subject.lose_chat()
    with pytest.raises(ChatUnavailable):
        await subject.platform.post(subject.chat, NOTICE, key="k6")


async def test_stop_is_idempotent(subject: Subject) -> None:
    await subject.platform.stop()
    await subject.platform.stop()


async def test_stop_before_start_is_safe() -> None:
    for factory in (_fake, _console, _telegram, _discord, _slack):
        async for s in factory():
            await s.platform.stop()


# ------------------------------------------------------------------ NativeEvents (platforms that have them)

SPEC = EventSpec(
    title="Weekly AMA",
    description="Ask anything",
    starts_at=datetime(2030, 1, 1, 19, 0, tzinfo=UTC),
    ends_at=datetime(2030, 1, 1, 20, 0, tzinfo=UTC),
    status=EventStatus.SCHEDULED,
    location="https://spaces.example/s/abcdefghjk",
    channel=None,
)


def _events(subject: Subject) -> NativeEvents:
    if not isinstance(subject.platform, NativeEvents):
        pytest.skip(f"{subject.platform.platform} has no native events")
    return subject.platform


async def test_an_event_is_created_and_kept_in_step_through_its_statuses(subject: Subject) -> None:
    events = _events(subject)
    event_id = await events.create_event(subject.chat, SPEC, key="ev1")
    assert isinstance(event_id, str) and event_id
    await events.update_event(subject.chat, event_id, SPEC)  # nothing changes: succeeds silently
    moved = replace(
        SPEC, starts_at=SPEC.starts_at + timedelta(hours=1), ends_at=SPEC.ends_at + timedelta(hours=1)
    )
    await events.update_event(subject.chat, event_id, moved)
    active = replace(moved, status=EventStatus.ACTIVE)
    await events.update_event(subject.chat, event_id, active)
    await events.update_event(subject.chat, event_id, active)  # a status it already has: silently
    await events.update_event(subject.chat, event_id, replace(active, status=EventStatus.COMPLETED))


async def test_an_event_can_be_cancelled_before_it_starts(subject: Subject) -> None:
    events = _events(subject)
    event_id = await events.create_event(subject.chat, SPEC, key="ev2")
    await events.update_event(subject.chat, event_id, replace(SPEC, status=EventStatus.CANCELED))


async def test_events_in_a_lost_chat_raise_chat_unavailable(subject: Subject) -> None:
    events = _events(subject)
    if subject.lose_chat is None:
        pytest.skip("this platform cannot lose a chat")
    event_id = await events.create_event(subject.chat, SPEC, key="ev3")
    await subject.lose_chat()
    # Slack has no object before a Space is live (the Call): a SCHEDULED update asks nothing of Slack, and
    # going live is the first update that can meet the lost chat
    spec = replace(SPEC, status=EventStatus.ACTIVE) if subject.chat.platform is Platform.SLACK else SPEC
    with pytest.raises(ChatUnavailable):
        await events.update_event(subject.chat, event_id, spec)
