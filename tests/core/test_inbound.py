"""The one inbound path (core/services/inbound.py): commands in, answers out — parsing, permissions, texts and
conversations kept in the database, on the memory, SQLite and PostgreSQL backends, with a controllable clock.

A "restart" is a new InboundService (and, on SQL, a new connection pool) over the same database: nothing the
first one held in memory reaches the second."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from core.models import SpaceStatus
from core.notices import ActionKind, Verb
from core.refs import ChatRef, Platform, UserRef
from core.rules import KEEP_REQUEST_IDS
from core.services import inbound as ib
from core.services.inbound import CONVERSATION_TTL, InboundService, Request
from core.services.profiles import ProfileService
from core.services.replies import Answer, RepliesService
from core.services.spaces import SpaceService
from core.texts import t
from storage.db import make_engine, make_session_factory
from storage.stores import unit_of_work_factory
from tests.backends import SqlBackend
from tests.conftest import CoreEnv, StaticLinks

HOST = UserRef(Platform.CONSOLE, "host")
ALICE = UserRef(Platform.CONSOLE, "alice")
GROUP = ChatRef(Platform.CONSOLE, "group")
DM = ChatRef(Platform.CONSOLE, "dm-host")


class Mods:
    """The platform's moderator check: who moderates, and every call made (it is a network call)."""

    def __init__(self, *moderators: UserRef) -> None:
        self.moderators = set(moderators)
        self.calls: list[tuple[ChatRef, UserRef]] = []

    async def __call__(self, chat: ChatRef, user: UserRef) -> bool:
        self.calls.append((chat, user))
        return user in self.moderators


def service(env: CoreEnv) -> InboundService:
    """A fresh service: what a restarted process builds."""
    return InboundService(
        spaces=env.spaces,
        profiles=ProfileService(env.db.uow),
        replies=RepliesService(env.db.uow, env.clock, env.wake),
        links=StaticLinks(),
        clock=env.clock,
        uow=env.db.uow,
    )


_n = iter(range(1, 10_000))


def request(
    user: UserRef = HOST,
    chat: ChatRef = DM,
    *,
    mods: Mods | None = None,
    locale: str = "en",
    request_id: str | None = None,
    replied_to: str | None = None,
    dm_link: bool = False,
) -> Request:
    return Request(
        actor=user,
        chat=chat,
        locale=locale,
        request_id=request_id or f"ev:{next(_n)}",
        private=chat == DM,
        is_moderator=mods or Mods(),
        message_id="m1",
        replied_to=replied_to,
        dm_link=(lambda sid: f"https://t.me/bot?start=s_{sid}") if dm_link else None,
    )


def texts(answers: list[Answer]) -> list[str]:
    return ["\n".join(a.notice.lines) for a in answers]


# --------------------------------------------------------------------------- scheduling and conversations


async def test_schedule_in_one_line_answers_what_was_read(core_env: CoreEnv) -> None:
    answers = await service(core_env).handle(request(), ib.Schedule("schedule tomorrow 20:00 Weekly AMA"))
    (space,) = await core_env.spaces.upcoming(DM)
    (text,) = texts(answers)
    assert text.startswith("Scheduled ✓\nTitle: Weekly AMA\nTime: Thu 26 Nov 2026, 20:00 CET")
    assert answers[0].notice.space_id == space.id and answers[0].notice.reply_to == "m1"
    # for the asker alone (the card is what the chat sees); platforms without ephemeral messages post it
    assert answers[0].notice.ephemeral and answers[0].chat == DM


async def test_schedule_from_fields_and_a_refusal_is_an_answer(core_env: CoreEnv) -> None:
    inbound = service(core_env)
    answers = await inbound.handle(request(), ib.Schedule(title="Town hall", when="friday 18:30", tz="UTC"))
    (space,) = await core_env.spaces.upcoming(DM)
    assert space.title == "Town hall" and space.tz == "UTC"
    assert "Title: Town hall" in texts(answers)[0]
    (refused,) = texts(await inbound.handle(request(locale="fr"), ib.Schedule("hier 20h Trop tard")))
    assert "est déjà passée" in refused
    (too_long,) = texts(await inbound.handle(request(), ib.Schedule("tomorrow " + "x" * 1200)))
    assert too_long == t("en", "input.too_long", limit=ib.MAX_INPUT)


async def test_bare_space_asks_the_title_then_the_time(core_env: CoreEnv) -> None:
    inbound = service(core_env)
    asked = await inbound.handle(request(request_id="ev:a"), ib.Schedule(""))
    assert texts(asked) == [t("en", "ask.title")] and asked[0].notice.ask
    assert not asked[0].notice.ephemeral  # in a group it is answered by replying to it
    asked = await inbound.handle(request(request_id="ev:b"), ib.Say("  Weekly AMA "))
    assert texts(asked) == [t("en", "ask.time", title="Weekly AMA")] and asked[0].notice.ask
    done = await inbound.handle(request(request_id="ev:c"), ib.Say("tomorrow 20:00"))
    assert texts(done)[0].startswith("Scheduled ✓\nTitle: Weekly AMA\n")
    (space,) = await core_env.spaces.upcoming(DM)
    assert space.title == "Weekly AMA"
    # the conversation is over: more text is not taken for anything
    assert await inbound.handle(request(request_id="ev:d"), ib.Say("tomorrow 21:00")) == []
    assert len(await core_env.spaces.upcoming(DM)) == 1


async def test_a_conversation_survives_a_restart_between_the_two_answers(core_env: CoreEnv) -> None:
    await service(core_env).handle(request(), ib.Schedule(""))
    await service(core_env).handle(request(), ib.Say("Weekly AMA"))  # another process, or after a restart
    done = await service(core_env).handle(request(), ib.Say("tomorrow 20:00"))
    assert "Title: Weekly AMA" in texts(done)[0]


async def test_a_conversation_survives_a_real_restart_of_the_database_connections(
    store_url: tuple[str, str | None], core_env: CoreEnv
) -> None:
    """On SQLite and PostgreSQL: the second answer reaches a process with a new connection pool."""
    _, url = store_url
    await service(core_env).handle(request(), ib.Schedule(""))
    await service(core_env).handle(request(), ib.Say("Weekly AMA"))
    if url is None:
        return  # memory: the test above covers it
    assert isinstance(core_env.db, SqlBackend)
    await core_env.db.engine.dispose()  # the first process is gone: its pool with it
    engine = make_engine(url)
    try:
        uow = unit_of_work_factory(make_session_factory(engine))
        spaces = SpaceService(uow, core_env.clock, core_env.wake, default_tz="Europe/Paris")
        restarted = InboundService(
            spaces=spaces,
            profiles=ProfileService(uow),
            replies=RepliesService(uow, core_env.clock, core_env.wake),
            links=StaticLinks(),
            clock=core_env.clock,
            uow=uow,
        )
        done = await restarted.handle(request(), ib.Say("tomorrow 20:00"))
        assert "Title: Weekly AMA" in texts(done)[0]
        (space,) = await spaces.upcoming(DM)
        assert space.title == "Weekly AMA"
    finally:
        await engine.dispose()


async def test_a_conversation_waits_ten_minutes_then_is_over(core_env: CoreEnv) -> None:
    inbound = service(core_env)
    await inbound.handle(request(), ib.Schedule(""))
    core_env.clock.advance(CONVERSATION_TTL - timedelta(seconds=1))
    assert texts(await inbound.handle(request(), ib.Say("Weekly AMA"))) == [
        t("en", "ask.time", title="Weekly AMA")
    ]
    core_env.clock.advance(CONVERSATION_TTL)  # each step waits ten minutes from its question
    assert await inbound.handle(request(), ib.Say("tomorrow 20:00")) == []
    assert await core_env.spaces.upcoming(DM) == []


async def test_a_bad_title_or_time_asks_again(core_env: CoreEnv) -> None:
    inbound = service(core_env)
    await inbound.handle(request(), ib.Schedule(""))
    (again,) = await inbound.handle(request(), ib.Say("   "))
    assert again.notice.ask  # the title's refusal, asked as a question: the conversation goes on
    await inbound.handle(request(), ib.Say("Weekly AMA"))
    error, ask = await inbound.handle(request(), ib.Say("whenever you like"))
    assert not error.notice.ask and ask.notice.ask
    assert "\n".join(ask.notice.lines) == t("en", "ask.time", title="Weekly AMA")
    done = await inbound.handle(request(), ib.Say("tomorrow 20:00"))
    assert "Title: Weekly AMA" in texts(done)[0]


async def test_a_step_delivered_again_takes_the_same_step_again(core_env: CoreEnv) -> None:
    """A platform redelivers a message whose answers were lost in a crash: the same answers come back, and
    the conversation does not move on twice (the title is not read as a time)."""
    inbound = service(core_env)
    await inbound.handle(request(request_id="ev:1"), ib.Schedule(""))
    first = await inbound.handle(request(request_id="ev:2"), ib.Say("Weekly AMA"))
    again = await service(core_env).handle(request(request_id="ev:2"), ib.Say("Weekly AMA"))
    assert texts(again) == texts(first) == [t("en", "ask.time", title="Weekly AMA")]
    done = await inbound.handle(request(request_id="ev:3"), ib.Say("tomorrow 20:00"))
    done_again = await inbound.handle(request(request_id="ev:3"), ib.Say("tomorrow 20:00"))
    assert texts(done_again) == texts(done)
    assert len(await core_env.spaces.upcoming(DM)) == 1  # scheduled once


async def test_in_a_group_only_a_reply_to_our_question_continues(core_env: CoreEnv) -> None:
    inbound = service(core_env)
    replies = RepliesService(core_env.db.uow, core_env.clock, core_env.wake)
    asked = await inbound.handle(request(chat=GROUP, request_id="ev:g1"), ib.Schedule(""))
    # the adapter queues the answers as the event's answers; the engine sends them
    assert await replies.finish(Platform.CONSOLE, "ev:g1", asked)
    await core_env.run()
    (question,) = [p for p in core_env.platform.of("post") if p.notice.ask]
    sent = await replies.sent_message("reply:ev:g1:0")
    assert sent is not None
    assert await inbound.handle(request(chat=GROUP), ib.Say("Weekly AMA")) == []  # not a reply
    assert await inbound.handle(request(chat=GROUP, replied_to="999"), ib.Say("Weekly AMA")) == []
    # someone else answering our question does not take over the host's conversation
    assert await inbound.handle(request(ALICE, GROUP, replied_to=sent.id), ib.Say("Mine")) == []
    answers = await inbound.handle(request(chat=GROUP, replied_to=sent.id), ib.Say("Weekly AMA"))
    assert texts(answers) == [t("en", "ask.time", title="Weekly AMA")]
    assert question.notice.lines == (t("en", "ask.title"),)


async def test_expired_conversations_are_pruned_with_the_request_ids(core_env: CoreEnv) -> None:
    await service(core_env).handle(request(), ib.Schedule(""))
    await service(core_env).handle(request(user=ALICE), ib.Schedule(""))
    outbox = core_env.db.outbox()
    # the prune is bookkeeping on its own time base: cut-offs are given, as the housekeeping job does
    now = core_env.clock.now()
    await outbox.prune(settled_before=now, requests_before=now)
    async with core_env.db.uow() as uow:
        assert await uow.conversations.get(DM, HOST) is not None  # not expired yet
    later = now + CONVERSATION_TTL + KEEP_REQUEST_IDS
    await outbox.prune(settled_before=later, requests_before=later - KEEP_REQUEST_IDS + timedelta(seconds=1))
    async with core_env.db.uow() as uow:
        assert await uow.conversations.get(DM, HOST) is None
        assert await uow.conversations.get(DM, ALICE) is None


# --------------------------------------------------------------------------- managing a Space


async def _scheduled(env: CoreEnv, chat: ChatRef = GROUP) -> str:
    await service(env).handle(request(chat=chat), ib.Schedule("tomorrow 20:00 Weekly AMA"))
    (space,) = await env.spaces.upcoming(chat)
    return space.id


async def test_the_host_is_never_checked_and_others_only_when_needed(core_env: CoreEnv) -> None:
    space_id = await _scheduled(core_env)
    inbound, mods = service(core_env), Mods(UserRef(Platform.CONSOLE, "bob"))
    (refused,) = texts(
        await inbound.handle(request(ALICE, GROUP, mods=mods), ib.Manage(Verb.START, space_id, "live"))
    )
    assert refused == "Only the host or a moderator of this community can start this Space."
    assert mods.calls == [(GROUP, ALICE)]
    mods.calls.clear()
    renamed = await inbound.handle(request(HOST, GROUP, mods=mods), ib.Rename(space_id.upper(), "AMA #2"))
    assert texts(renamed)[0].startswith("Renamed ✓\nTitle: AMA #2")
    assert mods.calls == []  # the host: no call to the platform
    bob = UserRef(Platform.CONSOLE, "bob")
    moved = await inbound.handle(request(bob, GROUP, mods=mods), ib.Reschedule(space_id, "tomorrow 21:00"))
    assert "Time: Thu 26 Nov 2026, 21:00 CET" in texts(moved)[0]
    cancelled = await inbound.handle(
        request(bob, GROUP, mods=mods), ib.Manage(Verb.CANCEL, space_id, "cancel")
    )
    assert texts(cancelled) == ["Cancelled “AMA #2”. Nobody had subscribed yet."]
    assert (await core_env.spaces.get(space_id)).status is SpaceStatus.CANCELLED


async def test_ids_are_checked_and_usage_is_said(core_env: CoreEnv) -> None:
    inbound = service(core_env)
    assert texts(await inbound.handle(request(), ib.Manage(Verb.END, "nope", "end"))) == [
        t("en", "usage.id", command="end")
    ]
    assert texts(await inbound.handle(request(), ib.Reschedule("abcd234567", " "))) == [
        t("en", "usage.reschedule")
    ]
    assert texts(await inbound.handle(request(), ib.Rename("", "x"))) == [t("en", "usage.rename")]
    (missing,) = texts(
        await inbound.handle(request(locale="fr"), ib.Manage(Verb.START, "abcd234567", "live"))
    )
    assert "Je ne trouve pas de Space avec l'identifiant « abcd234567 »" in missing


async def test_buttons_answer_the_presser_only(core_env: CoreEnv) -> None:
    space_id = await _scheduled(core_env)
    inbound = service(core_env)
    (sub,) = await inbound.handle(request(ALICE, GROUP), ib.Press(Verb.SUBSCRIBE, space_id, via_chat=GROUP))
    assert sub.notice.ephemeral and not sub.alert
    assert "\n".join(sub.notice.lines) == t("en", "reply.subscribed", title="Weekly AMA")
    (unsub,) = await inbound.handle(
        request(ALICE, GROUP), ib.Press(Verb.UNSUBSCRIBE, space_id, via_chat=GROUP)
    )
    assert unsub.notice.ephemeral and unsub.alert  # a reminder removed: said so it is not missed
    (nothing,) = await inbound.handle(
        request(ALICE, GROUP), ib.Press(Verb.UNSUBSCRIBE, space_id, via_chat=GROUP)
    )
    assert not nothing.alert
    assert "\n".join(nothing.notice.lines) == t("en", "reply.not_subscribed", title="Weekly AMA")
    (refused,) = await inbound.handle(request(ALICE, GROUP), ib.Press(Verb.START, space_id, via_chat=GROUP))
    assert refused.notice.ephemeral and refused.alert


async def test_a_subscriber_we_cannot_write_to_is_sent_to_the_private_chat(core_env: CoreEnv) -> None:
    space_id = await _scheduled(core_env)
    inbound = service(core_env)
    (answer,) = await inbound.handle(
        request(ALICE, GROUP, dm_link=True), ib.Press(Verb.SUBSCRIBE, space_id, via_chat=GROUP)
    )
    (link,) = answer.notice.actions
    assert link.kind is ActionKind.URL and link.value == f"https://t.me/bot?start=s_{space_id}"
    # opening that link subscribes there (once, however often it is opened) and offers the undo
    alice_dm = ChatRef(Platform.CONSOLE, "dm-alice")
    for _ in range(2):
        opened = await inbound.handle(
            Request(ALICE, alice_dm, "en", "ev:open", True, Mods()), ib.OpenLink(space_id)
        )
        assert texts(opened) == [t("en", "reply.subscribed", title="Weekly AMA")]
        assert opened[0].notice.actions[0].value == f"unsub:{space_id}"
    assert await core_env.spaces.subscriber_count(space_id) == 1
    profile = await core_env.profile(ALICE)
    assert profile is not None and profile.dm_reachable


async def test_a_host_scheduling_in_a_group_is_offered_their_reminders(core_env: CoreEnv) -> None:
    (answer,) = await service(core_env).handle(
        request(chat=GROUP, dm_link=True), ib.Schedule("tomorrow 20:00 Weekly AMA")
    )
    assert t("en", "reply.host_open_dm") in "\n".join(answer.notice.lines)
    assert answer.notice.actions[0].label == t("en", "button.get_reminders")


# --------------------------------------------------------------------------- lists and settings


async def test_lists_in_a_chat_and_in_a_terminal(core_env: CoreEnv) -> None:
    inbound = service(core_env)
    assert texts(await inbound.handle(request(chat=GROUP), ib.ListSpaces())) == [t("en", "reply.no_spaces")]
    space_id = await _scheduled(core_env)
    listed = await inbound.handle(request(chat=GROUP), ib.ListSpaces())
    assert not listed[0].notice.ephemeral  # a list the chat may read
    (chat_list,) = texts(listed)
    assert chat_list == (f"Upcoming Spaces here:\nWeekly AMA — Thu 26 Nov 2026, 20:00 CET · id `{space_id}`")
    reader = dataclasses.replace(request(chat=GROUP), tz="Asia/Tokyo")  # a zone the platform chose
    (table,) = texts(await inbound.handle(reader, ib.ListSpaces(ib.ListStyle.TABLE)))
    assert table == f"  {space_id}  Fri 27 Nov 2026, 04:00 JST  Weekly AMA  [scheduled]"


async def test_zones_help_and_welcome(core_env: CoreEnv) -> None:
    inbound, mods = service(core_env), Mods(HOST)
    assert texts(await inbound.handle(request(), ib.SetZone(""))) == [t("en", "usage.tz")]
    assert texts(await inbound.handle(request(), ib.SetZone("Asia/Tokyo"))) == [
        t("en", "reply.zone_set", zone="Asia/Tokyo")
    ]
    (unknown,) = texts(await inbound.handle(request(locale="fr"), ib.SetZone("Mars/Olympus")))
    assert "Je ne connais pas le fuseau « Mars/Olympus »" in unknown
    assert texts(await inbound.handle(request(ALICE, GROUP, mods=mods), ib.SetChatZone("UTC"))) == [
        t("en", "perm.admins_only")
    ]
    assert texts(await inbound.handle(request(HOST, GROUP, mods=mods), ib.SetChatZone("UTC"))) == [
        t("en", "reply.community_zone_set", zone="UTC")
    ]
    (help_text,) = texts(await inbound.handle(request(), ib.Help()))
    assert help_text == t("en", "help", zone="Asia/Tokyo")
    welcome = await inbound.handle(
        Request(ALICE, DM, "fr", "ev:w", True, Mods(), greet_name="Alice"), ib.OpenLink(None)
    )
    assert texts(welcome) == [t("fr", "welcome", name="Alice")]
