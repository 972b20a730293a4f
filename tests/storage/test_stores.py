"""Every store method, round trip, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.models import (
    Announcement,
    Community,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Space,
    SpaceStatus,
    Subscription,
    UserProfile,
)
from core.refs import ChatRef, MessageRef, Platform, UserRef
from storage.stores import SqlUnitOfWork, unit_of_work_factory
from storage.tables import delivery_t
from tests.builders import T0, row

PARIS = timezone(timedelta(hours=1))


def sub(space_id: str, uid: str, via: ChatRef | None = None, at: datetime = T0) -> Subscription:
    return Subscription(space_id=space_id, user=UserRef(Platform.TELEGRAM, uid), created_at=at, via_chat=via)


def delivery(space_id: str, key: str, **kw: Any) -> Delivery:
    """A host T-30 reminder (the storage tests' usual row)."""
    fields: dict[str, Any] = {"kind": DeliveryKind.HOST_T30, "recipient": "telegram:user:1001", **kw}
    return row(space_id, key, fields.pop("due_at", T0 - timedelta(minutes=30)), **fields)


# --------------------------------------------------------------------------- unit of work


async def test_uncommitted_work_is_rolled_back(uow: SqlUnitOfWork, new_space: Callable[..., Space]) -> None:
    async with uow:
        await uow.spaces.add(new_space())
    async with uow:
        assert await uow.spaces.get("abcdefghjk") is None


async def test_exception_rolls_back(uow: SqlUnitOfWork, new_space: Callable[..., Space]) -> None:
    with pytest.raises(RuntimeError):
        async with uow:
            await uow.spaces.add(new_space())
            raise RuntimeError("boom")
    async with uow:
        assert await uow.spaces.get("abcdefghjk") is None


async def test_commit_then_more_work(uow: SqlUnitOfWork, new_space: Callable[..., Space]) -> None:
    async with uow:
        await uow.spaces.add(new_space("aaaaaaaaaa"))
        await uow.commit()
        await uow.spaces.add(new_space("bbbbbbbbbb"))  # a new transaction; not committed
    async with uow:
        assert await uow.spaces.get("aaaaaaaaaa") is not None
        assert await uow.spaces.get("bbbbbbbbbb") is None


async def test_factory_makes_independent_units(
    sessions: async_sessionmaker[AsyncSession], new_space: Callable[..., Space]
) -> None:
    factory = unit_of_work_factory(sessions)
    first, second = factory(), factory()
    assert first is not second
    async with first:
        await first.spaces.add(new_space())
        await first.commit()
    async with second:
        assert await second.spaces.get("abcdefghjk") is not None


async def test_stores_refuse_work_outside_the_block(uow: SqlUnitOfWork) -> None:
    with pytest.raises(RuntimeError):
        await uow.spaces.get("x")


# --------------------------------------------------------------------------- spaces


async def test_space_round_trip(uow: SqlUnitOfWork, new_space: Callable[..., Space]) -> None:
    space = new_space(
        description="bring snacks",
        audio_source="https://radio.example/stream.mp3",
        starts_at=datetime(2026, 3, 14, 19, 30, tzinfo=PARIS),  # stored as UTC
        host=UserRef(Platform.SLACK, "U123"),
        chat=ChatRef(Platform.SLACK, "C42"),
    )
    async with uow:
        await uow.spaces.add(space)
        await uow.commit()
    async with uow:
        got = await uow.spaces.get(space.id)
    assert got == space
    assert got is not None
    assert got.starts_at.tzinfo is UTC and got.created_at.tzinfo is UTC
    assert got.starts_at == T0
    assert got.host == UserRef(Platform.SLACK, "U123") and got.platform is Platform.SLACK


async def test_space_save_persists_every_field(uow: SqlUnitOfWork, space: Space) -> None:
    changed = replace(
        space,
        title="Renamed",
        description="d",
        audio_source="file:///a.ogg",
        status=SpaceStatus.ENDED,
        revision=3,
        starts_at=T0 + timedelta(days=1),
        started_at=T0 + timedelta(days=1, minutes=2),
        ended_at=T0 + timedelta(days=1, hours=1),
        tz="America/New_York",
        locale="en",
    )
    async with uow:
        await uow.spaces.save(changed)
        await uow.commit()
    async with uow:
        assert await uow.spaces.get(space.id) == changed
        with pytest.raises(LookupError):
            await uow.spaces.save(replace(space, id="nosuchid00"))


async def test_space_get_for_update(uow: SqlUnitOfWork, space: Space) -> None:
    async with uow:
        assert await uow.spaces.get_for_update(space.id) == space
        assert await uow.spaces.get_for_update("missing000") is None


async def test_space_duplicate_id_is_an_error(uow: SqlUnitOfWork, space: Space) -> None:
    with pytest.raises(IntegrityError):
        async with uow:
            await uow.spaces.add(space)


async def test_naive_datetimes_are_refused(uow: SqlUnitOfWork, new_space: Callable[..., Space]) -> None:
    with pytest.raises(Exception, match="timezone"):
        async with uow:
            await uow.spaces.add(new_space(starts_at=datetime(2026, 1, 1, 12, 0)))


async def test_count_open_by_host_and_upcoming_in_chat(
    uow: SqlUnitOfWork, new_space: Callable[..., Space]
) -> None:
    host = UserRef(Platform.TELEGRAM, "1001")
    here = ChatRef(Platform.TELEGRAM, "-100200")
    elsewhere = ChatRef(Platform.TELEGRAM, "-100999")
    spaces = [
        new_space("s1aaaaaaaa", starts_at=T0 + timedelta(hours=2)),
        new_space("s2aaaaaaaa", starts_at=T0 + timedelta(hours=1), status=SpaceStatus.LIVE),
        new_space("s3aaaaaaaa", status=SpaceStatus.ENDED),
        new_space("s4aaaaaaaa", status=SpaceStatus.CANCELLED),
        new_space("s5aaaaaaaa", host=UserRef(Platform.TELEGRAM, "2002"), chat=elsewhere),
        # scheduled elsewhere but its card was posted here too
        new_space(
            "s6aaaaaaaa",
            host=UserRef(Platform.TELEGRAM, "2002"),
            chat=elsewhere,
            starts_at=T0 + timedelta(hours=3),
        ),
    ]
    async with uow:
        for s in spaces:
            await uow.spaces.add(s)
        await uow.announcements.add(
            Announcement("s6aaaaaaaa", MessageRef(Platform.TELEGRAM, "-100200", "77"))
        )
        await uow.commit()
    async with uow:
        assert await uow.spaces.count_open_by_host(host) == 2
        assert await uow.spaces.count_open_by_host(UserRef(Platform.DISCORD, "1001")) == 0
        upcoming = await uow.spaces.upcoming_in_chat(here)
        assert [s.id for s in upcoming] == ["s2aaaaaaaa", "s1aaaaaaaa", "s6aaaaaaaa"]
        assert [s.id for s in await uow.spaces.upcoming_in_chat(here, limit=1)] == ["s2aaaaaaaa"]
        assert [s.id for s in await uow.spaces.upcoming_in_chat(elsewhere)] == ["s5aaaaaaaa", "s6aaaaaaaa"]


# --------------------------------------------------------------------------- subscriptions


async def test_subscriptions(uow: SqlUnitOfWork, space: Space) -> None:
    via = ChatRef(Platform.TELEGRAM, "-100200")
    a, b = sub(space.id, "1", via), sub(space.id, "2", at=T0 + timedelta(seconds=1))
    async with uow:
        assert await uow.subscriptions.add(a) is True
        assert await uow.subscriptions.add(b) is True
        assert await uow.subscriptions.add(replace(a, created_at=T0 + timedelta(hours=5))) is False
        await uow.commit()
    async with uow:
        assert await uow.subscriptions.list(space.id) == [a, b]  # the repeat changed nothing
        assert await uow.subscriptions.count(space.id) == 2
        assert await uow.subscriptions.exists(space.id, a.user)
        assert await uow.subscriptions.remove(space.id, a.user) is True
        assert await uow.subscriptions.remove(space.id, a.user) is False
        assert not await uow.subscriptions.exists(space.id, a.user)
        assert await uow.subscriptions.count(space.id) == 1
        assert await uow.subscriptions.count("otherspace") == 0
        assert await uow.subscriptions.list("otherspace") == []


async def test_subscription_needs_a_space(uow: SqlUnitOfWork) -> None:
    with pytest.raises(IntegrityError):
        async with uow:
            await uow.subscriptions.add(sub("nosuchspace", "1"))


# --------------------------------------------------------------------------- deliveries


async def test_delivery_round_trip(uow: SqlUnitOfWork, space: Space) -> None:
    full = delivery(
        space.id,
        "space:x:r1:mention:telegram:user:5",
        kind=DeliveryKind.MENTION,
        recipient="telegram:chat:-100200",
        subject="telegram:user:5",
        about=DeliveryKind.LIVE_NOTICE,
        status=DeliveryStatus.SENT,
        claimed_by="worker-a",
        lease_until=T0 + timedelta(minutes=5),
        attempts=2,
        last_error="429",
        sent_ref="telegram:msg:-100200:991",
        sent_at=T0 + timedelta(seconds=3),
        late_by=3.25,
    )
    plain = delivery(space.id, "k-plain", due_at=datetime(2026, 3, 14, 18, 30, tzinfo=PARIS))
    async with uow:
        assert await uow.deliveries.add([full, plain]) == 2
        await uow.commit()
    async with uow:
        rows = await uow.deliveries.list_for_space(space.id)
    assert [r.key for r in rows] == ["k-plain", full.key]  # by due_at
    got_plain, got_full = rows
    assert got_full.id is not None and got_plain.id is not None
    # stored without a priority: the kind's (core.rules.priority)
    assert (got_full.priority, got_plain.priority) == (20, 10)
    assert replace(got_full, id=None, priority=None) == full
    assert replace(got_plain, id=None, priority=None) == plain
    assert got_plain.due_at.tzinfo is UTC and got_plain.due_at == T0 - timedelta(hours=1)
    assert got_full.kind is DeliveryKind.MENTION and got_full.about is DeliveryKind.LIVE_NOTICE


async def test_delivery_keys_are_idempotent(uow: SqlUnitOfWork, space: Space) -> None:
    async with uow:
        assert await uow.deliveries.add([delivery(space.id, "k1"), delivery(space.id, "k2")]) == 2
        await uow.commit()
    async with uow:
        # one old key, one new, and a repeat inside the same batch
        batch = [delivery(space.id, "k1", revision=9), delivery(space.id, "k3"), delivery(space.id, "k3")]
        assert await uow.deliveries.add(batch) == 1
        assert await uow.deliveries.add([]) == 0
        await uow.commit()
    async with uow:
        rows = await uow.deliveries.list_for_space(space.id)
    assert sorted(r.key for r in rows) == ["k1", "k2", "k3"]
    assert {r.revision for r in rows if r.key == "k1"} == {1}  # the first write stands


async def test_withdraw_only_pending_rows_of_those_kinds(uow: SqlUnitOfWork, space: Space) -> None:
    async with uow:
        await uow.deliveries.add(
            [
                delivery(space.id, "t30"),
                delivery(space.id, "t0", kind=DeliveryKind.HOST_T0),
                delivery(space.id, "card", kind=DeliveryKind.CARD_POST, recipient="telegram:chat:-1"),
                delivery(space.id, "sent", status=DeliveryStatus.SENT),
            ]
        )
        await uow.commit()
    async with uow:
        n = await uow.deliveries.withdraw(
            space.id, [DeliveryKind.HOST_T30, DeliveryKind.HOST_T0], "rescheduled"
        )
        assert n == 2
        assert await uow.deliveries.withdraw(space.id, [], "nothing") == 0
        await uow.commit()
    async with uow:
        by_key = {d.key: d for d in await uow.deliveries.list_for_space(space.id)}
    assert by_key["t30"].status is DeliveryStatus.WITHDRAWN and by_key["t30"].last_error == "rescheduled"
    assert by_key["t0"].status is DeliveryStatus.WITHDRAWN
    assert by_key["card"].status is DeliveryStatus.PENDING
    assert by_key["sent"].status is DeliveryStatus.SENT and by_key["sent"].last_error is None


async def test_fan_out(uow: SqlUnitOfWork, space: Space) -> None:
    via = ChatRef(Platform.TELEGRAM, "-100200")
    async with uow:
        await uow.subscriptions.add(sub(space.id, "1", via))
        await uow.subscriptions.add(sub(space.id, "2"))
        await uow.commit()
    due = datetime(2026, 3, 14, 19, 30, tzinfo=PARIS)
    prefix = f"space:{space.id}:r2:live"
    async with uow:
        assert await uow.deliveries.fan_out(space.id, 2, DeliveryKind.LIVE_NOTICE, due, prefix) == 2
        await uow.subscriptions.add(sub(space.id, "3"))
        # a repeat (crash and retry) only adds the newcomer
        assert await uow.deliveries.fan_out(space.id, 2, DeliveryKind.LIVE_NOTICE, due, prefix) == 1
        assert await uow.deliveries.fan_out("nosuchspace", 1, DeliveryKind.LIVE_NOTICE, due, "p") == 0
        await uow.commit()
    async with uow:
        rows = {d.recipient: d for d in await uow.deliveries.list_for_space(space.id)}
    assert set(rows) == {"telegram:user:1", "telegram:user:2", "telegram:user:3"}
    one = rows["telegram:user:1"]
    assert one.key == f"{prefix}:telegram:user:1"
    assert one.kind is DeliveryKind.LIVE_NOTICE and one.platform is Platform.TELEGRAM
    assert one.subject == "telegram:chat:-100200" and rows["telegram:user:2"].subject is None
    assert one.space_id == space.id and one.revision == 2
    assert one.due_at == T0 and one.due_at.tzinfo is UTC
    assert one.status is DeliveryStatus.PENDING and one.attempts == 0 and one.claimed_by is None


async def test_fan_out_ten_thousand_subscribers_in_one_statement(
    uow: SqlUnitOfWork, space: Space, engine: AsyncEngine
) -> None:
    from storage.tables import subscription_t

    n = 10_000
    rows = [
        {
            "space_id": space.id,
            "user_ref": f"telegram:user:{i}",
            "platform": "telegram",
            "via_chat": None,
            "created_at": T0,
        }
        for i in range(n)
    ]
    async with engine.begin() as conn:
        await conn.execute(subscription_t.insert(), rows)

    statements: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    from sqlalchemy import event

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        async with uow:
            statements.clear()
            inserted = await uow.deliveries.fan_out(space.id, 1, DeliveryKind.LIVE_NOTICE, T0, "live")
            fan_out_statements = list(statements)
            await uow.commit()
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
    assert inserted == n
    # a constant number of statements whatever the audience: the notices, then the mentions of those
    # already known unreachable (none here)
    assert len(fan_out_statements) == 2
    assert all(s.lstrip().startswith("INSERT INTO delivery") for s in fan_out_statements)
    async with engine.connect() as conn:
        keys = (await conn.execute(select(delivery_t.c.key))).scalars().all()
    assert len(keys) == n and len(set(keys)) == n


# --------------------------------------------------------------------------- announcements, users, communities


async def test_announcements(uow: SqlUnitOfWork, space: Space) -> None:
    a = Announcement(space.id, MessageRef(Platform.TELEGRAM, "-100200", "55"))
    b = Announcement(space.id, MessageRef(Platform.TELEGRAM, "-100300", "9"))
    async with uow:
        await uow.announcements.add(a)
        await uow.announcements.add(b)
        await uow.announcements.add(a)  # idempotent on the handle
        await uow.commit()
    async with uow:
        assert await uow.announcements.list(space.id) == [a, b]
        assert await uow.announcements.list("other") == []


async def test_users(uow: SqlUnitOfWork) -> None:
    alice = UserProfile(
        UserRef(Platform.DISCORD, "111"),
        tz="Europe/Paris",
        locale="fr",
        dm_reachable=True,
        dm_channel="999",
        display_name="Alice",
    )
    bob = UserRef(Platform.SLACK, "U2")
    async with uow:
        assert await uow.users.get(alice.user) is None
        await uow.users.upsert(alice)
        await uow.users.set_reachable(bob, False)  # creates the row
        await uow.commit()
    async with uow:
        assert await uow.users.get(alice.user) == alice
        assert await uow.users.get(bob) == UserProfile(bob, dm_reachable=False)
        await uow.users.set_reachable(alice.user, False)  # only that field changes
        await uow.users.upsert(UserProfile(bob, tz="UTC"))  # the whole profile is replaced
        await uow.commit()
    async with uow:
        assert await uow.users.get(alice.user) == replace(alice, dm_reachable=False)
        many = await uow.users.get_many([alice.user, bob, UserRef(Platform.DISCORD, "nobody"), bob])
    assert many == {alice.user: replace(alice, dm_reachable=False), bob: UserProfile(bob, tz="UTC")}


async def test_get_many_handles_long_lists(uow: SqlUnitOfWork) -> None:
    users = [UserRef(Platform.TELEGRAM, str(i)) for i in range(1_200)]
    async with uow:
        for u in users[::2]:
            await uow.users.set_reachable(u, True)
        found = await uow.users.get_many(users)
    assert set(found) == set(users[::2])


async def test_communities(uow: SqlUnitOfWork) -> None:
    guild = Community(ChatRef(Platform.DISCORD, "4242"), tz="Asia/Tokyo", locale="ja", moderator_role="mods")
    async with uow:
        assert await uow.communities.get(guild.chat) is None
        await uow.communities.upsert(guild)
        await uow.commit()
    async with uow:
        assert await uow.communities.get(guild.chat) == guild
        await uow.communities.upsert(replace(guild, moderator_role=None, tz="UTC"))
        await uow.commit()
    async with uow:
        assert await uow.communities.get(guild.chat) == replace(guild, moderator_role=None, tz="UTC")


# --------------------------------------------------------------------------- inbound ids


async def test_inbound_ids_are_remembered(uow: SqlUnitOfWork) -> None:
    async with uow:
        assert await uow.inbound.remember(Platform.SLACK, "req-1", "scheduled:abc") is None
        assert await uow.inbound.remember(Platform.SLACK, "req-1", "something else") == "scheduled:abc"
        # same id on another platform is another request
        assert await uow.inbound.remember(Platform.DISCORD, "req-1", "d") is None
        await uow.commit()
    async with uow:
        assert await uow.inbound.remember(Platform.SLACK, "req-1", "again") == "scheduled:abc"


async def test_inbound_id_rolls_back_with_its_change(uow: SqlUnitOfWork) -> None:
    async with uow:
        assert await uow.inbound.remember(Platform.TELEGRAM, "u-7", "r") is None
        # no commit: the command failed, the retry must act
    async with uow:
        assert await uow.inbound.remember(Platform.TELEGRAM, "u-7", "r2") is None
