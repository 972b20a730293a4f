"""TelegramPlatform as core.ports.Places: message links (public group by its @username once seen, private
supergroup t.me/c/, none elsewhere), the subscribe deep link once the bot's username is known, no avatar."""

from __future__ import annotations

from bots.telegram.adapter import TelegramPlatform
from core.notices import reply
from core.ports import Places
from core.refs import ChatRef, MessageRef, Platform, UserRef
from tests.bots.telegram.conftest import Links, TgEnv


async def test_links(tg_env: TgEnv) -> None:
    p, tg = tg_env.platform, tg_env.tg
    assert isinstance(p, Places)
    public = tg.create_group("Jazz club", username="jazzclub")
    private = tg.create_group("Back room")
    basic = tg.create_group("Old group", supergroup=False)
    sent = {
        g.id: await p.post(ChatRef(Platform.TELEGRAM, str(g.id)), reply("hello"), key=f"k{g.id}")
        for g in (public, private, basic)
    }
    assert p.message_link(sent[public.id]) == f"https://t.me/jazzclub/{sent[public.id].id}"
    assert p.message_link(sent[private.id]) == (
        f"https://t.me/c/{str(private.id).removeprefix('-100')}/{sent[private.id].id}"
    )
    assert p.message_link(sent[basic.id]) is None  # basic groups have no message links
    assert p.message_link(MessageRef(Platform.TELEGRAM, "12345", "7")) is None  # a private chat
    assert p.event_link(ChatRef(Platform.TELEGRAM, str(public.id)), "1") is None
    assert p.subscribe_link("abcdefghjk") == "https://t.me/SpacesTestBot?start=s_abcdefghjk"
    # Telegram's photos are only reachable with the bot token in the URL: never on a page
    assert await p.avatar_url(UserRef(Platform.TELEGRAM, "12345")) is None


async def test_no_deep_link_before_start(tg_env: TgEnv) -> None:
    fresh = TelegramPlatform(
        tg_env.platform.config,
        spaces=tg_env.spaces,
        profiles=tg_env.profiles,
        replies=tg_env.replies,
        links=Links(),
        clock=tg_env.clock,
    )
    assert fresh.subscribe_link("abcdefghjk") is None


async def test_a_public_groups_username_is_learnt_from_its_updates(tg_env: TgEnv) -> None:
    """A card posted by another process (a worker): this one learns the group's @username from what the
    group sends it, and links the card publicly."""
    p, tg = tg_env.platform, tg_env.tg
    host = tg.create_user("Hana", username="hana", started=True)
    public = tg.create_group("Jazz club", username="jazzclub", creator=host)
    card = MessageRef(Platform.TELEGRAM, str(public.id), "77")
    assert p.message_link(card) == f"https://t.me/c/{str(public.id).removeprefix('-100')}/77"
    await tg.user_sends(host, public, "/help")
    await tg_env.eventually(lambda: _async(p.message_link(card) == "https://t.me/jazzclub/77"))


async def _async(value: bool) -> bool:
    return value
