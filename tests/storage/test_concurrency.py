"""Check-then-act rules under real concurrency: many transactions at once, each on its own connection, on
SQLite and PostgreSQL. (The core tests run one unit of work at a time; these are the races between them.)

Without the per-user lock (``UserStore.lock``), PostgreSQL lets all 15 concurrent schedules count the same
9 open Spaces and insert: 15 created where the quota is 10 — what the issue measured.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from core.commands import ScheduleSpace
from core.errors import TooManySpaces
from core.refs import ChatRef, Platform, UserRef
from core.rules import MAX_OPEN_PER_HOST, Actor
from core.services.profiles import ProfileService
from core.services.spaces import SpaceService
from core.texts import t
from storage.db import make_engine, make_session_factory
from storage.stores import unit_of_work_factory
from tests.fakes.clock import FakeClock, RecordingWake

HOST = UserRef(Platform.TELEGRAM, "42")
CHAT = ChatRef(Platform.TELEGRAM, "-100")
CONCURRENT = 15
# Connections at once: enough that many transactions overlap (without the lock, PostgreSQL creates 15 with
# 8), few enough to leave room on a PostgreSQL server that other test runs share (max_connections 100).
CONNECTIONS = 8


@pytest.fixture
async def pool(engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    """A second engine on the (emptied) test database, with CONNECTIONS connections."""
    url = engine.url.render_as_string(hide_password=False)
    sized = (
        make_engine(url, pool_size=CONNECTIONS, max_overflow=0)
        if engine.dialect.name == "postgresql"
        else make_engine(url)
    )
    try:
        yield sized
    finally:
        await sized.dispose()


async def test_the_host_quota_holds_against_concurrent_schedules(pool: AsyncEngine) -> None:
    uow = unit_of_work_factory(make_session_factory(pool))
    spaces = SpaceService(uow, FakeClock(), RecordingWake(), default_tz="UTC")

    async def schedule(i: int) -> object:
        cmd = ScheduleSpace(Actor(HOST, locale="en"), CHAT, f"Talk {i}", f"in {i + 2} hours")
        return await spaces.schedule(cmd)

    results = await asyncio.gather(*(schedule(i) for i in range(CONCURRENT)), return_exceptions=True)

    refused = [r for r in results if isinstance(r, TooManySpaces)]
    created = [r for r in results if not isinstance(r, BaseException)]
    assert [r for r in results if isinstance(r, BaseException) and r not in refused] == []
    assert (len(created), len(refused)) == (MAX_OPEN_PER_HOST, CONCURRENT - MAX_OPEN_PER_HOST)
    async with uow() as u:
        assert await u.spaces.count_open_by_host(HOST) == MAX_OPEN_PER_HOST
    # each refusal is the quota message, with the count every one of them saw under the lock
    assert {t("en", e.key, **e.params) for e in refused} == {
        "You already have 10 upcoming Spaces (the limit is 10). End or cancel one first."
    }


async def test_concurrent_profile_changes_are_all_kept(pool: AsyncEngine) -> None:
    """Each change reads the whole profile and writes it back: unlocked, the later write undoes the other."""
    profiles = ProfileService(unit_of_work_factory(make_session_factory(pool)))
    users = [UserRef(Platform.TELEGRAM, str(1000 + i)) for i in range(CONNECTIONS // 2)]

    async def both(user: UserRef) -> None:
        await asyncio.gather(
            profiles.set_zone(user, "Europe/Paris"),
            profiles.seen(user, display_name=f"User {user.id}", locale="fr"),
        )

    await asyncio.gather(*(both(u) for u in users))
    for user in users:
        profile = await profiles.get(user)
        assert profile is not None
        assert (profile.tz, profile.display_name, profile.locale) == ("Europe/Paris", f"User {user.id}", "fr")


async def test_concurrent_links_and_merges_never_leave_a_chat_in_two_groups(pool: AsyncEngine) -> None:
    """Eight chats linked pairwise in a chain by eight transactions at once (each on its own connection),
    every one of them merging groups others are merging too: afterwards every chat is in the one group of
    all eight, and each chat names the same members (no chat stranded in a group of its own). Without the
    link store's advisory lock, PostgreSQL fails this (a merge renames a group while another adds to it)."""
    from datetime import UTC, datetime

    uow = unit_of_work_factory(make_session_factory(pool))
    now = datetime(2026, 12, 7, 21, 0, tzinfo=UTC)
    chats = [ChatRef(Platform.TELEGRAM, f"-{100 + i}") for i in range(CONNECTIONS)]

    async def link(a: ChatRef, b: ChatRef) -> None:
        async with uow() as u:
            await u.links.link_chats(a, b, now=now)
            await u.commit()

    pairs = [(chats[i], chats[(i + 1) % len(chats)]) for i in range(len(chats))]
    await asyncio.gather(*(link(a, b) for a, b in pairs))
    async with uow() as u:
        groups = {tuple(map(str, await u.links.chats(c))) for c in chats}
    assert groups == {tuple(sorted(str(c) for c in chats))}
