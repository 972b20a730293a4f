"""One Space, every platform (core/services/links.py through the inbound path): linking chats and accounts
with one-time codes, on the memory, SQLite and PostgreSQL backends, with a controllable clock.

A Telegram group, a Discord channel and a Slack channel; moderators per platform (``Mods``)."""

from __future__ import annotations

from datetime import timedelta

from core.models import Community, DeliveryKind
from core.notices import Verb
from core.refs import ChatRef, Platform, UserRef
from core.services import inbound as ib
from core.services.inbound import InboundService, Request
from core.services.links import LINK_TTL
from core.services.profiles import ProfileService
from core.services.replies import Answer, RepliesService
from core.texts import t
from tests.conftest import CoreEnv, StaticLinks
from tests.fakes.memory import MemoryOneTimeCodes

TG = ChatRef(Platform.TELEGRAM, "-100")
DC = ChatRef(Platform.DISCORD, "55", scope="9")
SL = ChatRef(Platform.SLACK, "C1", scope="T1")
TG_MOD = UserRef(Platform.TELEGRAM, "7")
DC_MOD = UserRef(Platform.DISCORD, "8")
SL_MOD = UserRef(Platform.SLACK, "U9", scope="T1")
ALICE_TG = UserRef(Platform.TELEGRAM, "alice")
ALICE_DC = UserRef(Platform.DISCORD, "alice")
PRIVATE = {
    Platform.TELEGRAM: ChatRef(Platform.TELEGRAM, "alice"),
    Platform.DISCORD: ChatRef(Platform.DISCORD, "dm-alice"),
}


class Mods:
    def __init__(self, *moderators: tuple[ChatRef, UserRef]) -> None:
        self.moderators = set(moderators)
        self.calls: list[tuple[ChatRef, UserRef]] = []

    async def __call__(self, chat: ChatRef, user: UserRef) -> bool:
        self.calls.append((chat, user))
        return (chat, user) in self.moderators


MODS = Mods((TG, TG_MOD), (DC, DC_MOD), (SL, SL_MOD))
_n = iter(range(1, 100_000))


def service(env: CoreEnv, codes: MemoryOneTimeCodes) -> InboundService:
    return InboundService(
        spaces=env.spaces,
        profiles=ProfileService(env.db.uow),
        replies=RepliesService(env.db.uow, env.clock, env.wake),
        links=StaticLinks(),
        clock=env.clock,
        uow=env.db.uow,
        codes=codes,
    )


def request(user: UserRef, chat: ChatRef, *, private: bool = False, locale: str = "en") -> Request:
    return Request(
        actor=user,
        chat=chat,
        locale=locale,
        request_id=f"ev:{next(_n)}",
        private=private,
        is_moderator=MODS,
    )


def text(answers: list[Answer]) -> str:
    (answer,) = answers
    return "\n".join(answer.notice.lines)


def code_in(answer: str) -> str:
    return answer.split("`/space link ")[1].split("`")[0]


async def link(inbound: InboundService, a: tuple[UserRef, ChatRef], b: tuple[UserRef, ChatRef]) -> str:
    """A moderator of ``a`` asks for a code, one of ``b`` types it: the answer in ``b``."""
    code = code_in(text(await inbound.handle(request(*a), ib.Link())))
    return text(await inbound.handle(request(*b), ib.Link(code)))


async def rows(env: CoreEnv, space_id: str, kind: DeliveryKind) -> list[str]:
    async with env.db.uow() as uow:
        return sorted(d.recipient for d in await uow.deliveries.list_for_space(space_id) if d.kind is kind)


async def schedule(env: CoreEnv, inbound: InboundService, user: UserRef, chat: ChatRef, title: str) -> str:
    await inbound.handle(request(user, chat), ib.Schedule(f"tomorrow 20:00 {title}"))
    (space,) = [s for s in await env.spaces.upcoming(chat, limit=50) if s.title == title]
    return space.id


async def told(env: CoreEnv, chat: ChatRef) -> list[str]:
    """What was posted in ``chat`` outside any Space (what link and unlink tell the other chats)."""
    await env.engine.deliver_due()
    return [
        "\n".join(s.notice.lines)
        for s in env.platform.sent
        if s.op == "post" and s.target == str(chat) and s.notice.space_id is None
    ]


async def test_linked_chats_get_every_space_card_and_native_event(core_env: CoreEnv) -> None:
    core_env.spaces.mirror_native_events({Platform.DISCORD})
    inbound = service(core_env, MemoryOneTimeCodes())
    answer = await link(inbound, (TG_MOD, TG), (DC_MOD, DC))
    assert answer.startswith("Linked ✓ This chat now shares its Spaces with a Telegram group:")
    answer = await link(inbound, (SL_MOD, SL), (DC_MOD, DC))  # a third chat joins the group
    assert t("en", "link.what.slack") + t("en", "link.more", count=1) in answer
    assert "a Slack channel (and 1 more chat)" in answer
    sid = await schedule(core_env, inbound, TG_MOD, TG, "Town hall")
    assert await rows(core_env, sid, DeliveryKind.CARD_POST) == sorted(str(c) for c in (TG, DC, SL))
    assert await rows(core_env, sid, DeliveryKind.EVENT_CREATE) == [str(DC)]  # where the platform has them
    await core_env.engine.deliver_due()
    posted = sorted(s.target for s in core_env.platform.sent if s.op == "post" and s.notice.space_id == sid)
    assert posted == sorted(str(c) for c in (TG, DC, SL))


async def test_linking_announces_each_sides_open_spaces_in_the_other(core_env: CoreEnv) -> None:
    inbound = service(core_env, MemoryOneTimeCodes())
    tg_space = await schedule(core_env, inbound, TG_MOD, TG, "Telegram AMA")
    dc_space = await schedule(core_env, inbound, DC_MOD, DC, "Discord AMA")
    await link(inbound, (TG_MOD, TG), (DC_MOD, DC))
    assert await rows(core_env, tg_space, DeliveryKind.CARD_POST) == sorted([str(TG), str(DC)])
    assert await rows(core_env, dc_space, DeliveryKind.CARD_POST) == sorted([str(TG), str(DC)])
    # the Telegram group is told, in words its members understand
    assert await told(core_env, TG) == [t("en", "link.told", what="a Discord channel")]


async def test_codes_single_use_expiry_purpose_and_who_may_link(core_env: CoreEnv) -> None:
    inbound = service(core_env, MemoryOneTimeCodes())
    # not a moderator of the chat: neither a code nor a link
    refused = text(await inbound.handle(request(ALICE_TG, TG), ib.Link()))
    assert refused == t("en", "link.moderators_only")
    code = code_in(text(await inbound.handle(request(TG_MOD, TG), ib.Link())))
    assert text(await inbound.handle(request(ALICE_DC, DC), ib.Link(code))) == t("en", "link.moderators_only")
    # a group's code typed in a private chat is no account code (and is not spent by it)
    private = request(ALICE_DC, PRIVATE[Platform.DISCORD], private=True)
    assert text(await inbound.handle(private, ib.Link(code))) == t("en", "link.bad_code")
    # its own chat
    assert text(await inbound.handle(request(TG_MOD, TG), ib.Link(code))) == t("en", "link.self")
    # single use: spent by the attempt above
    assert text(await inbound.handle(request(DC_MOD, DC), ib.Link(code))) == t("en", "link.bad_code")
    # expired after 10 minutes
    code = code_in(text(await inbound.handle(request(TG_MOD, TG), ib.Link())))
    core_env.clock.advance(LINK_TTL)
    assert text(await inbound.handle(request(DC_MOD, DC), ib.Link(code))) == t("en", "link.bad_code")
    # typed in lower case with spaces, within the time: works; the same pair again says so
    code = code_in(text(await inbound.handle(request(TG_MOD, TG), ib.Link())))
    typed = code.lower().replace("-", " ")
    assert text(await inbound.handle(request(DC_MOD, DC), ib.Link(typed))).startswith("Linked ✓")
    code = code_in(text(await inbound.handle(request(DC_MOD, DC), ib.Link())))
    assert text(await inbound.handle(request(TG_MOD, TG), ib.Link(code))) == t("en", "link.already")


async def test_moderators_of_every_linked_chat_manage_asked_on_their_own_platform(
    core_env: CoreEnv,
) -> None:
    inbound = service(core_env, MemoryOneTimeCodes())
    host = UserRef(Platform.TELEGRAM, "host")
    sid = await schedule(core_env, inbound, host, TG, "Town hall")
    # before linking, a Discord moderator may not start a Telegram group's Space
    await inbound.handle(request(DC_MOD, DC), ib.Manage(Verb.START, sid, "start"))
    assert (await core_env.spaces.get(sid)).status.value == "scheduled"
    await link(inbound, (TG_MOD, TG), (DC_MOD, DC))
    await core_env.engine.deliver_due()  # the card is posted in both chats
    MODS.calls.clear()
    await inbound.handle(request(DC_MOD, DC), ib.Manage(Verb.START, sid, "start"))
    assert (await core_env.spaces.get(sid)).status.value == "live"
    # the Discord moderator was asked about the Discord channel only, never about the Telegram group
    assert MODS.calls == [(DC, DC_MOD)]
    # every card turns live together: one edit per announcement
    await core_env.engine.deliver_due()
    async with core_env.db.uow() as uow:
        anns = await uow.announcements.list(sid)
        edits = [d for d in await uow.deliveries.list_for_space(sid) if d.kind is DeliveryKind.CARD_EDIT]
    assert len(anns) == 2 and len({d.recipient for d in edits}) == 2


async def test_linked_accounts_are_notified_once_on_the_platform_subscribed_last(core_env: CoreEnv) -> None:
    inbound = service(core_env, MemoryOneTimeCodes())
    await link(inbound, (TG_MOD, TG), (DC_MOD, DC))
    host = UserRef(Platform.TELEGRAM, "host")
    sid = await schedule(core_env, inbound, host, TG, "Town hall")
    await inbound.handle(request(ALICE_TG, TG), ib.Press(Verb.SUBSCRIBE, sid, via_chat=TG))
    core_env.clock.advance(timedelta(minutes=1))
    await inbound.handle(request(ALICE_DC, DC), ib.Press(Verb.SUBSCRIBE, sid, via_chat=DC))
    # accounts linked in private chats: a code from Telegram's, typed in Discord's
    issued = text(
        await inbound.handle(request(ALICE_TG, PRIVATE[Platform.TELEGRAM], private=True), ib.Link())
    )
    assert issued.startswith("To link your accounts")
    done = await inbound.handle(
        request(ALICE_DC, PRIVATE[Platform.DISCORD], private=True), ib.Link(code_in(issued))
    )
    assert text(done).startswith("Linked ✓ Your accounts (Discord, Telegram) are one person now")
    assert await core_env.spaces.subscriber_count(sid) == 1  # people, not accounts
    await inbound.handle(request(host, TG), ib.Manage(Verb.START, sid, "start"))
    assert await rows(core_env, sid, DeliveryKind.LIVE_NOTICE) == [str(ALICE_DC)]
    # unlinked again: each account is its own person (a later fan-out reaches both)
    unlinked = await inbound.handle(request(ALICE_DC, PRIVATE[Platform.DISCORD], private=True), ib.Unlink())
    assert text(unlinked) == t("en", "link.unlinked_account", accounts="Telegram")
    assert await core_env.spaces.subscriber_count(sid) == 2


async def test_unlink_tells_the_others_and_the_next_space_stays_home(core_env: CoreEnv) -> None:
    inbound = service(core_env, MemoryOneTimeCodes())
    await link(inbound, (TG_MOD, TG), (DC_MOD, DC))
    await link(inbound, (SL_MOD, SL), (DC_MOD, DC))
    assert text(await inbound.handle(request(ALICE_DC, DC), ib.Unlink())) == t("en", "link.moderators_only")
    answer = text(await inbound.handle(request(DC_MOD, DC), ib.Unlink()))
    assert answer == t("en", "link.unlinked", what="a Slack channel (and 1 more chat)")
    assert text(await inbound.handle(request(DC_MOD, DC), ib.Unlink())) == t("en", "link.not_linked")
    sid = await schedule(core_env, inbound, DC_MOD, DC, "Only here")
    assert await rows(core_env, sid, DeliveryKind.CARD_POST) == [str(DC)]
    sid = await schedule(core_env, inbound, TG_MOD, TG, "Still shared")
    assert await rows(core_env, sid, DeliveryKind.CARD_POST) == sorted([str(TG), str(SL)])
    # the chats left were told (the one that left was answered instead)
    unlinked = t("en", "link.told_unlinked", what="A Discord channel")
    assert (await told(core_env, TG)).count(unlinked) == 1
    assert (await told(core_env, SL)).count(unlinked) == 1
    assert not [m for m in await told(core_env, DC) if "no longer" in m]
    french = text(await inbound.handle(request(DC_MOD, DC, locale="fr"), ib.Unlink()))
    assert french == t("fr", "link.not_linked")


async def test_a_link_command_delivered_twice_links_once_and_answers_the_same(core_env: CoreEnv) -> None:
    """Platforms deliver at least once: the same request again finds its code spent by itself."""
    inbound = service(core_env, MemoryOneTimeCodes())
    code = code_in(text(await inbound.handle(request(TG_MOD, TG), ib.Link())))
    again = request(DC_MOD, DC)
    first = text(await inbound.handle(again, ib.Link(code)))
    assert first.startswith("Linked ✓") and text(await inbound.handle(again, ib.Link(code))) == first
    mine = request(ALICE_TG, PRIVATE[Platform.TELEGRAM], private=True)
    code = code_in(text(await inbound.handle(mine, ib.Link())))
    theirs = request(ALICE_DC, PRIVATE[Platform.DISCORD], private=True)
    first = text(await inbound.handle(theirs, ib.Link(code)))
    assert first.startswith("Linked ✓") and text(await inbound.handle(theirs, ib.Link(code))) == first


async def test_each_chat_is_told_in_its_own_language(core_env: CoreEnv) -> None:
    async with core_env.db.uow() as uow:
        await uow.communities.upsert(Community(TG, locale="fr"))
        await uow.commit()
    inbound = service(core_env, MemoryOneTimeCodes())
    await link(inbound, (TG_MOD, TG), (DC_MOD, DC))  # the Discord moderator writes in English
    assert await told(core_env, TG) == [t("fr", "link.told", what="un salon Discord")]
