"""``/space list`` offers the community's calendar feed (core/services/feeds.py), on the memory, SQLite and
PostgreSQL backends: one line under the list, in the asker's language, the same URL every time (the token is
made on first ask), and none in a private chat (a feed is a community's)."""

from __future__ import annotations

from core.refs import ChatRef, Platform
from core.services import inbound as ib
from core.services.feeds import FeedService
from core.services.inbound import InboundService, Request
from core.services.profiles import ProfileService
from core.services.replies import RepliesService
from core.texts import t
from tests.conftest import CoreEnv, StaticLinks

GROUP = ChatRef(Platform.CONSOLE, "group")
DM = ChatRef(Platform.CONSOLE, "dm-host")
FEEDS = "https://spaces.test/feeds/"


def service(env: CoreEnv) -> tuple[InboundService, FeedService]:
    feeds = FeedService(env.db.uow, env.clock, lambda token: f"{FEEDS}{token}.ics")
    inbound = InboundService(
        spaces=env.spaces,
        profiles=ProfileService(env.db.uow),
        replies=RepliesService(env.db.uow, env.clock, env.wake),
        links=StaticLinks(),
        clock=env.clock,
        uow=env.db.uow,
        feeds=feeds,
    )
    return inbound, feeds


def request(chat: ChatRef, *, locale: str = "en", n: int = 0) -> Request:
    async def no(chat: ChatRef, user: object) -> bool:
        return False

    return Request(
        actor=CoreEnv.host,
        chat=chat,
        locale=locale,
        request_id=f"ev:{chat.id}:{locale}:{n}",
        private=chat == DM,
        is_moderator=no,
        message_id="m1",
    )


async def test_the_list_carries_the_feed_url_in_both_languages(core_env: CoreEnv) -> None:
    inbound, feeds = service(core_env)
    await inbound.handle(request(GROUP), ib.Schedule("schedule tomorrow 20:00 Weekly AMA"))
    (listed,) = await inbound.handle(request(GROUP, n=1), ib.ListSpaces())
    url = await feeds.url_for(GROUP)
    assert url.startswith(FEEDS) and len(url) > len(FEEDS) + 30
    lines = listed.notice.lines
    assert lines[-1] == t("en", "list.feed", url=url) == f"📅 All of them in your calendar: {url}"
    (french,) = await inbound.handle(request(GROUP, locale="fr", n=2), ib.ListSpaces())
    assert french.notice.lines[-1] == t("fr", "list.feed", url=url)
    (table,) = await inbound.handle(request(GROUP, n=3), ib.ListSpaces(ib.ListStyle.TABLE))
    assert table.notice.lines[-1] == t("en", "list.feed", url=url)


async def test_no_feed_in_a_private_chat(core_env: CoreEnv) -> None:
    inbound, _ = service(core_env)
    await inbound.handle(request(DM), ib.Schedule("schedule tomorrow 20:00 Weekly AMA"))
    (listed,) = await inbound.handle(request(DM, n=1), ib.ListSpaces())
    assert "Weekly AMA" in "\n".join(listed.notice.lines)
    assert FEEDS not in "\n".join(listed.notice.lines)
