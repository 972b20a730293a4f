"""The persistence ports' contract (core/ports.py), one suite run on every implementation: the in-memory
fake (``[memory]``) and storage/ on SQLite (``[sqlite]``) and PostgreSQL (``[postgres]``).

What the docstrings of core/ports.py leave open is pinned here, as storage/ does it, so the fake cannot
drift from the real thing:

* orderings: ``upcoming_in_chat`` by (starts_at, id); ``subscriptions.list`` by (created_at, user);
  ``list_for_space`` by (due_at, id); ``claim_due`` by (priority, due_at, id); ``announcements.list`` as
  added; a row stored without a priority gets ``rules.priority(kind)``;
* a lease ends at ``lease_until`` (free from that instant); every claim has a new ``claim`` token, which
  ``renew`` and ``settle`` (given it) are fenced on;
* a duplicate Space id, or a row naming a Space that does not exist, is rejected (primary / foreign key;
  ``IntegrityError`` on SQL), and ``save`` of an unknown Space raises ``LookupError``;
* ``settle`` overwrites only the fields it is given (``last_error``, ``sent_ref``, ``late_by``), stamps
  ``sent_at`` on SENT, always clears ``lease_until`` and ``claim``, keeps ``claimed_by`` on settled rows, and on PENDING
  frees the row (``claimed_by`` None) at ``due_at`` (default: now); CLAIMED is not an outcome (ValueError);
  ``settle_many`` is the same per outcome, in one transaction: a batch with an invalid outcome records none;
* ``counts()`` lists every DeliveryStatus, with 0 for statuses without rows;
* objects handed out are copies: changing one changes nothing stored.

Every row referencing a Space is written after the Space (storage has foreign keys).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import IntegrityError

from core import rules
from core.models import (
    Announcement,
    BridgedChannel,
    Community,
    Conversation,
    ConversationStep,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Outcome,
    Space,
    SpaceStatus,
    Subscription,
    UserProfile,
)
from core.ports import Outbox, UnitOfWork, UnitOfWorkFactory
from core.refs import ChatRef, MessageRef, Platform, UserRef
from tests.backends import StoreBackend
from tests.builders import CHAT, HOST, LEASE, OTHER_CHAT, T0, row, row_id, space

ALICE = UserRef(Platform.TELEGRAM, "alice")
BOB = UserRef(Platform.TELEGRAM, "bob")
CAROL = UserRef(Platform.TELEGRAM, "carol")

#: what a backend raises for a duplicate primary key or a dangling foreign key
REJECTED = (IntegrityError, ValueError, LookupError)


# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def backend(store_backend: StoreBackend) -> tuple[UnitOfWorkFactory, Outbox]:
    """(uow_factory, outbox) of one backend — ``store_backend`` is parametrized memory / sqlite / postgres."""
    return store_backend.uow, store_backend.outbox()


@pytest.fixture
def uow_factory(backend: tuple[UnitOfWorkFactory, Outbox]) -> UnitOfWorkFactory:
    return backend[0]


@pytest.fixture
def outbox(backend: tuple[UnitOfWorkFactory, Outbox]) -> Outbox:
    return backend[1]


async def add_spaces(uow_factory: UnitOfWorkFactory, *spaces: Space) -> None:
    async with uow_factory() as uow:
        for sp in spaces:
            await uow.spaces.add(sp)
        await uow.commit()


async def add_rows(uow_factory: UnitOfWorkFactory, rows: Sequence[Delivery]) -> int:
    async with uow_factory() as uow:
        n = await uow.deliveries.add(rows)
        await uow.commit()
    return n


async def rows_of(uow_factory: UnitOfWorkFactory, space_id: str = "sp1") -> list[Delivery]:
    async with uow_factory() as uow:
        return await uow.deliveries.list_for_space(space_id)


async def by_key(uow_factory: UnitOfWorkFactory, space_id: str = "sp1") -> dict[str, Delivery]:
    return {d.key: d for d in await rows_of(uow_factory, space_id)}


# --------------------------------------------------------------------------- spaces


async def test_space_round_trips_every_field(uow_factory: UnitOfWorkFactory) -> None:
    sp = space(
        description="Bring your instrument",
        audio_source="https://example.org/jam.ogg",
        status=SpaceStatus.LIVE,
        revision=3,
        starts_at=T0.replace(microsecond=123456),
        started_at=T0 + timedelta(minutes=2),
        ended_at=T0 + timedelta(hours=1),
        host_key="k3yOfTheHostsPrivatePage",
    )
    await add_spaces(uow_factory, sp)
    async with uow_factory() as uow:
        got = await uow.spaces.get(sp.id)
        assert got == sp and got.host_key == "k3yOfTheHostsPrivatePage"
        assert got is not None and got.starts_at.utcoffset() == timedelta(0)  # aware UTC
        assert await uow.spaces.get_for_update(sp.id) == sp
        assert await uow.spaces.get("missing") is None
        assert await uow.spaces.get_for_update("missing") is None


async def test_save_persists_every_field_of_an_existing_space(uow_factory: UnitOfWorkFactory) -> None:
    await add_spaces(uow_factory, space())
    async with uow_factory() as uow:
        sp = await uow.spaces.get_for_update("sp1")
        assert sp is not None
        changed = replace(
            sp,
            title="Saturday jam",
            description="moved",
            host=UserRef(Platform.TELEGRAM, "1002"),
            chat=OTHER_CHAT,
            starts_at=T0 + timedelta(days=1),
            tz="America/New_York",
            locale="en",
            created_at=T0 - timedelta(days=1),
            audio_source="file:///jam.mp3",
            status=SpaceStatus.ENDED,
            revision=2,
            started_at=T0 + timedelta(days=1, minutes=1),
            ended_at=T0 + timedelta(days=1, hours=2),
        )
        await uow.spaces.save(changed)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.spaces.get("sp1") == changed
        with pytest.raises(LookupError):
            await uow.spaces.save(space("ghost"))


async def test_a_duplicate_space_id_is_rejected(uow_factory: UnitOfWorkFactory) -> None:
    await add_spaces(uow_factory, space())
    with pytest.raises(REJECTED):
        async with uow_factory() as uow:
            await uow.spaces.add(space(title="Impostor"))
            await uow.commit()
    async with uow_factory() as uow:
        got = await uow.spaces.get("sp1")
        assert got is not None and got.title == "Friday jam"


async def test_rows_naming_an_unknown_space_are_rejected(uow_factory: UnitOfWorkFactory) -> None:
    writes = [
        lambda uow: uow.subscriptions.add(Subscription("ghost", ALICE, T0)),
        lambda uow: uow.deliveries.add([row("ghost", "k1")]),
        lambda uow: uow.announcements.add(Announcement("ghost", MessageRef(Platform.TELEGRAM, CHAT.id, "1"))),
    ]
    for write in writes:
        with pytest.raises(REJECTED):
            async with uow_factory() as uow:
                await write(uow)
                await uow.commit()


async def test_objects_handed_out_are_copies(uow_factory: UnitOfWorkFactory) -> None:
    await add_spaces(uow_factory, space())
    async with uow_factory() as uow:
        await uow.users.upsert(UserProfile(ALICE, locale="fr"))
        await uow.communities.upsert(Community(CHAT, locale="fr"))
        await uow.deliveries.add([row("sp1", "k1")])
        await uow.commit()
    async with uow_factory() as uow:
        sp, profile, community = (
            await uow.spaces.get("sp1"),
            await uow.users.get(ALICE),
            await uow.communities.get(CHAT),
        )
        assert sp is not None and profile is not None and community is not None
        sp.title, profile.locale, community.locale = "changed", "de", "de"
        (d,) = await uow.deliveries.list_for_space("sp1")
        d.status = DeliveryStatus.DEAD
        await uow.commit()  # nothing was saved or upserted: nothing changes
    async with uow_factory() as uow:
        assert (await uow.spaces.get("sp1")) == space()
        assert await uow.users.get(ALICE) == UserProfile(ALICE, locale="fr")
        assert await uow.communities.get(CHAT) == Community(CHAT, locale="fr")
        assert [d.status for d in await uow.deliveries.list_for_space("sp1")] == [DeliveryStatus.PENDING]


async def test_count_open_by_host_counts_scheduled_and_live_only(uow_factory: UnitOfWorkFactory) -> None:
    other = UserRef(Platform.TELEGRAM, "2002")
    await add_spaces(
        uow_factory,
        space("s1"),
        space("s2", status=SpaceStatus.LIVE),
        space("s3", status=SpaceStatus.ENDED),
        space("s4", status=SpaceStatus.CANCELLED),
        space("s5", host=other),
    )
    async with uow_factory() as uow:
        assert await uow.spaces.count_open_by_host(HOST) == 2
        assert await uow.spaces.count_open_by_host(other) == 1
        assert await uow.spaces.count_open_by_host(UserRef(Platform.DISCORD, "1001")) == 0


async def test_upcoming_in_chat_is_open_spaces_announced_there_soonest_first(
    uow_factory: UnitOfWorkFactory,
) -> None:
    h = timedelta(hours=1)
    await add_spaces(
        uow_factory,
        space("late", starts_at=T0 + 3 * h),
        space("live", starts_at=T0 + h, status=SpaceStatus.LIVE),  # by start time, not live first
        space("soon-b", starts_at=T0),
        space("soon-a", starts_at=T0),  # same start: by id
        space("ended", starts_at=T0 - h, status=SpaceStatus.ENDED),
        space("cancelled", starts_at=T0 - h, status=SpaceStatus.CANCELLED),
        space("elsewhere", chat=OTHER_CHAT, starts_at=T0 - h),
        space("shared", chat=OTHER_CHAT, starts_at=T0 + 2 * h),  # its card was also posted in CHAT
    )
    async with uow_factory() as uow:
        await uow.announcements.add(Announcement("shared", MessageRef(Platform.TELEGRAM, CHAT.id, "77")))
        await uow.announcements.add(Announcement("ended", MessageRef(Platform.TELEGRAM, OTHER_CHAT.id, "78")))
        await uow.commit()
    async with uow_factory() as uow:
        found = [s.id for s in await uow.spaces.upcoming_in_chat(CHAT)]
        assert found == ["soon-a", "soon-b", "live", "shared", "late"]
        assert [s.id for s in await uow.spaces.upcoming_in_chat(CHAT, limit=2)] == ["soon-a", "soon-b"]
        assert [s.id for s in await uow.spaces.upcoming_in_chat(OTHER_CHAT)] == ["elsewhere", "shared"]
        assert await uow.spaces.upcoming_in_chat(ChatRef(Platform.TELEGRAM, "-1")) == []
        (first, *_) = await uow.spaces.upcoming_in_chat(CHAT)
        assert first == space("soon-a", starts_at=T0)  # whole Spaces, not ids


GUILD = ChatRef(Platform.DISCORD, "5001", scope="900")
GUILD_VOICE = ChatRef(Platform.DISCORD, "5002", scope="900")
OTHER_GUILD = ChatRef(Platform.DISCORD, "6001", scope="901")
DISCORD_HOST = UserRef(Platform.DISCORD, "77")


async def test_a_scoped_space_round_trips_with_its_voice_channel(uow_factory: UnitOfWorkFactory) -> None:
    sp = space("scoped", chat=GUILD, host=DISCORD_HOST, voice=GUILD_VOICE, description="In the stage")
    await add_spaces(uow_factory, sp, space("plain"))
    async with uow_factory() as uow:
        got = await uow.spaces.get("scoped")
        assert got == sp and got is not None and got.chat.scope == "900" and got.voice == GUILD_VOICE
        plain = await uow.spaces.get("plain")
        assert plain is not None and plain.voice is None and plain.chat.scope is None
        got.voice = None
        await uow.spaces.save(got)
        await uow.commit()
    async with uow_factory() as uow:
        again = await uow.spaces.get("scoped")
        assert again is not None and again.voice is None


async def test_open_queries_for_autocomplete(uow_factory: UnitOfWorkFactory) -> None:
    h = timedelta(hours=1)
    other_host = UserRef(Platform.DISCORD, "78")
    await add_spaces(
        uow_factory,
        space("g-mine-late", chat=GUILD, host=DISCORD_HOST, starts_at=T0 + 3 * h, title="Late Jam"),
        space("g-mine-live", chat=GUILD, host=DISCORD_HOST, starts_at=T0, status=SpaceStatus.LIVE),
        space("g-mine-done", chat=GUILD, host=DISCORD_HOST, starts_at=T0, status=SpaceStatus.ENDED),
        space("g-theirs", chat=GUILD_VOICE, host=other_host, starts_at=T0 + h, title="100% Weekly_AMA"),
        space("o-mine", chat=OTHER_GUILD, host=DISCORD_HOST, starts_at=T0 + 2 * h, title="Elsewhere"),
        space("o-theirs", chat=OTHER_GUILD, host=other_host, starts_at=T0 + h),
        space("unscoped", chat=ChatRef(Platform.DISCORD, "5001"), host=other_host, starts_at=T0),
        space("tg", starts_at=T0),  # a Telegram group: no scope
    )
    async with uow_factory() as uow:
        subs = [("g-theirs", DISCORD_HOST), ("o-theirs", DISCORD_HOST), ("g-mine-done", other_host)]
        for sid, user in subs:
            await uow.subscriptions.add(Subscription(sid, user, T0))
        await uow.subscriptions.add(Subscription("tg", ALICE, T0))
        await uow.commit()

    async with uow_factory() as uow:

        async def ids(found: Sequence[Space]) -> list[str]:
            return [x.id for x in found]

        mine = await uow.spaces.open_by_host(DISCORD_HOST, limit=25)
        assert await ids(mine) == ["g-mine-live", "o-mine", "g-mine-late"]  # anywhere, open only
        assert mine[0] == space("g-mine-live", chat=GUILD, host=DISCORD_HOST, status=SpaceStatus.LIVE)
        assert await ids(await uow.spaces.open_by_host(DISCORD_HOST, limit=1)) == ["g-mine-live"]
        # the scope: every chat of the guild, not another guild, not the unscoped chat with the same id
        in_guild = await uow.spaces.open_in_scope(ChatRef(Platform.DISCORD, "5999", scope="900"), limit=25)
        assert await ids(in_guild) == ["g-mine-live", "g-theirs", "g-mine-late"]
        assert await ids(await uow.spaces.open_in_scope(CHAT, limit=25)) == ["tg"]  # unscoped: that chat
        assert await uow.spaces.open_in_scope(ChatRef(Platform.SLACK, "C1", scope="900"), limit=25) == []
        # what was typed: a piece of the title (any case), or the start of the id; LIKE wildcards are literal
        assert await ids(await uow.spaces.open_in_scope(GUILD, limit=25, text="  LATE j ")) == ["g-mine-late"]
        assert await ids(await uow.spaces.open_in_scope(GUILD, limit=25, text="g-th")) == ["g-theirs"]
        assert await ids(await uow.spaces.open_in_scope(GUILD, limit=25, text="100%")) == ["g-theirs"]
        assert await uow.spaces.open_in_scope(GUILD, limit=25, text="%") == [await uow.spaces.get("g-theirs")]
        assert await ids(await uow.spaces.open_in_scope(GUILD, limit=25, text="y_a")) == ["g-theirs"]
        assert await uow.spaces.open_in_scope(GUILD, limit=25, text="y_b") == []
        assert await uow.spaces.open_by_host(DISCORD_HOST, limit=25, text="_") == []
        # followed: open Spaces subscribed to, soonest first
        assert await ids(await uow.spaces.open_followed_by(DISCORD_HOST, limit=25)) == [
            "g-theirs",
            "o-theirs",
        ]
        assert await ids(await uow.spaces.open_followed_by(DISCORD_HOST, limit=0)) == []
        assert await uow.spaces.open_followed_by(other_host, limit=25) == []  # g-mine-done is over
        assert await ids(await uow.spaces.open_followed_by(ALICE, limit=25)) == ["tg"]


async def test_list_stale_is_spaces_never_started_or_never_ended_oldest_first(
    uow_factory: UnitOfWorkFactory,
) -> None:
    h = timedelta(hours=1)
    await add_spaces(
        uow_factory,
        space("old-sched", starts_at=T0 - 20 * h),
        space("new-sched", starts_at=T0 - h),
        space("old-live", starts_at=T0 - 30 * h, status=SpaceStatus.LIVE, started_at=T0 - 30 * h),
        space("new-live", starts_at=T0 - 40 * h, status=SpaceStatus.LIVE, started_at=T0 - 2 * h),
        space("ended", starts_at=T0 - 50 * h, status=SpaceStatus.ENDED),
    )
    async with uow_factory() as uow:
        found = await uow.spaces.list_stale(scheduled_before=T0 - 12 * h, live_before=T0 - 12 * h, limit=10)
        assert [x.id for x in found] == ["old-live", "old-sched"]
        one = await uow.spaces.list_stale(scheduled_before=T0 - 12 * h, live_before=T0 - 12 * h, limit=1)
        assert [x.id for x in one] == ["old-live"]


# --------------------------------------------------------------------------- subscriptions


async def test_subscriptions_add_remove_exists_count_list(uow_factory: UnitOfWorkFactory) -> None:
    await add_spaces(uow_factory, space("sp1"), space("sp2"))
    alice = Subscription("sp1", ALICE, T0 + timedelta(minutes=2), via_chat=CHAT)
    bob = Subscription("sp1", BOB, T0 + timedelta(minutes=1))
    carol = Subscription("sp1", CAROL, T0 + timedelta(minutes=1))  # same instant as bob: by user
    async with uow_factory() as uow:
        assert await uow.subscriptions.add(alice) is True
        assert await uow.subscriptions.add(carol) is True
        assert await uow.subscriptions.add(bob) is True
        # already subscribed: False, and nothing changes (not the time, not the chat)
        assert await uow.subscriptions.add(Subscription("sp1", ALICE, T0 + timedelta(hours=1))) is False
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.subscriptions.exists("sp1", ALICE) is True
        assert await uow.subscriptions.exists("sp2", ALICE) is False
        assert await uow.subscriptions.count("sp1") == 3
        assert await uow.subscriptions.count("sp2") == 0
        assert await uow.subscriptions.list("sp1") == [bob, carol, alice]  # by (created_at, user)
        assert await uow.subscriptions.list("sp2") == []
        assert await uow.subscriptions.remove("sp1", ALICE) is True
        assert await uow.subscriptions.remove("sp1", ALICE) is False
        assert await uow.subscriptions.remove("sp2", BOB) is False
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.subscriptions.exists("sp1", ALICE) is False
        assert await uow.subscriptions.count("sp1") == 2
        assert await uow.subscriptions.list("sp1") == [bob, carol]


# --------------------------------------------------------------------------- deliveries


async def test_delivery_round_trips_every_field(uow_factory: UnitOfWorkFactory) -> None:
    await add_spaces(uow_factory, space())
    d = row(
        "sp1",
        "mention:1",
        kind=DeliveryKind.MENTION,
        recipient=str(CHAT),
        subject=str(ALICE),
        about=DeliveryKind.HOST_T0,
        revision=4,
        status=DeliveryStatus.SENT,
        claimed_by="w9",
        lease_until=T0 + LEASE,
        attempts=2,
        last_error="HTTP 502",
        sent_ref="telegram:msg:-100200:5",
        sent_at=T0 + timedelta(seconds=3),
        late_by=3.25,
        priority=5,
        claim="c0ffee",
        id=424242,  # the store numbers rows itself
    )
    assert await add_rows(uow_factory, [d]) == 1
    (got,) = await rows_of(uow_factory)
    assert got.id is not None and got.id != 424242
    assert got == replace(d, id=got.id)


async def test_delivery_add_ignores_existing_keys_also_within_one_call(
    uow_factory: UnitOfWorkFactory,
) -> None:
    await add_spaces(uow_factory, space())
    assert await add_rows(uow_factory, [row("sp1", "a"), row("sp1", "b")]) == 2
    again = [
        row("sp1", "a", recipient="telegram:user:other"),
        row("sp1", "c"),
        row("sp1", "c", recipient="telegram:user:second-c"),
    ]
    assert await add_rows(uow_factory, again) == 1
    assert await add_rows(uow_factory, []) == 0
    rows = await by_key(uow_factory)
    assert sorted(rows) == ["a", "b", "c"]
    assert rows["a"].recipient == "telegram:user:a"  # the existing row wins
    assert rows["c"].recipient == "telegram:user:c"  # the first of the call wins
    assert row_id(rows["a"]) < row_id(rows["b"]) < row_id(rows["c"])


async def test_list_for_space_is_that_space_by_due_time_then_id(uow_factory: UnitOfWorkFactory) -> None:
    await add_spaces(uow_factory, space("sp1"), space("sp2"))
    m = timedelta(minutes=1)
    for d in (row("sp1", "third", T0 + 2 * m), row("sp1", "first", T0 + m), row("sp1", "second", T0 + m)):
        await add_rows(uow_factory, [d])
    await add_rows(uow_factory, [row("sp2", "elsewhere", T0)])
    assert [d.key for d in await rows_of(uow_factory, "sp1")] == ["first", "second", "third"]
    assert [d.key for d in await rows_of(uow_factory, "sp2")] == ["elsewhere"]
    assert await rows_of(uow_factory, "nope") == []


async def test_fan_out_writes_one_row_per_subscriber_once(uow_factory: UnitOfWorkFactory) -> None:
    await add_spaces(uow_factory, space("sp1"), space("sp2"), space("empty"))
    async with uow_factory() as uow:
        await uow.subscriptions.add(Subscription("sp1", ALICE, T0, via_chat=OTHER_CHAT))
        await uow.subscriptions.add(Subscription("sp1", BOB, T0))
        await uow.subscriptions.add(Subscription("sp2", CAROL, T0))
        await uow.commit()
    prefix = "space:sp1:r2:live_notice"
    due = T0 + timedelta(minutes=5)
    async with uow_factory() as uow:
        assert await uow.deliveries.fan_out("sp1", 2, DeliveryKind.LIVE_NOTICE, due, prefix) == 2
        assert await uow.deliveries.fan_out("empty", 1, DeliveryKind.LIVE_NOTICE, due, "space:empty") == 0
        await uow.commit()
    rows = await by_key(uow_factory)
    assert sorted(rows) == [f"{prefix}:{ALICE}", f"{prefix}:{BOB}"]
    a = rows[f"{prefix}:{ALICE}"]
    assert a == Delivery(
        key=f"{prefix}:{ALICE}",
        kind=DeliveryKind.LIVE_NOTICE,
        platform=Platform.TELEGRAM,
        recipient=str(ALICE),
        space_id="sp1",
        revision=2,
        due_at=due,
        status=DeliveryStatus.PENDING,
        subject=str(OTHER_CHAT),  # the subscription's via_chat
        priority=rules.PRIORITY_BULK,
        id=a.id,
    )
    assert rows[f"{prefix}:{BOB}"].subject is None  # no via_chat
    assert await rows_of(uow_factory, "sp2") == []
    # idempotent: a second fan-out with the same prefix writes only for new subscribers
    async with uow_factory() as uow:
        assert await uow.deliveries.fan_out("sp1", 2, DeliveryKind.LIVE_NOTICE, due, prefix) == 0
        await uow.subscriptions.add(Subscription("sp1", CAROL, T0))
        assert await uow.deliveries.fan_out("sp1", 2, DeliveryKind.LIVE_NOTICE, due, prefix) == 1
        await uow.commit()
    assert len(await rows_of(uow_factory)) == 3


async def test_withdraw_touches_only_pending_rows_of_those_kinds(
    uow_factory: UnitOfWorkFactory, outbox: Outbox
) -> None:
    await add_spaces(uow_factory, space("sp1"), space("sp2"))
    later, past = T0 + timedelta(hours=1), T0 - timedelta(hours=1)
    K = DeliveryKind
    await add_rows(
        uow_factory,
        [
            row("sp1", "t30", later, kind=K.HOST_T30),
            row("sp1", "t0", later, kind=K.HOST_T0),
            row("sp1", "live", later, kind=K.LIVE_NOTICE),
            row("sp1", "t30-claimed", past, kind=K.HOST_T30),
            row("sp1", "t0-sent", past, kind=K.HOST_T0),
            row("sp2", "t30-elsewhere", later, kind=K.HOST_T30),
        ],
    )
    claimed = {d.key: d for d in await outbox.claim_due(now=T0, worker="w1", lease=LEASE, batch=10)}
    assert sorted(claimed) == ["t0-sent", "t30-claimed"]
    assert await outbox.settle(row_id(claimed["t0-sent"]), worker="w1", status=DeliveryStatus.SENT, now=T0)
    async with uow_factory() as uow:
        assert await uow.deliveries.withdraw("sp1", [K.HOST_T30, K.HOST_T0], "rescheduled") == 2
        assert await uow.deliveries.withdraw("sp1", [], "nothing") == 0
        await uow.commit()
    rows = await by_key(uow_factory)
    assert {k: d.status for k, d in rows.items()} == {
        "t30": DeliveryStatus.WITHDRAWN,
        "t0": DeliveryStatus.WITHDRAWN,
        "live": DeliveryStatus.PENDING,
        "t30-claimed": DeliveryStatus.CLAIMED,
        "t0-sent": DeliveryStatus.SENT,
    }
    assert rows["t30"].last_error == rows["t0"].last_error == "rescheduled"
    assert rows["live"].last_error is None and rows["t30-claimed"].last_error is None
    (elsewhere,) = await rows_of(uow_factory, "sp2")
    assert elsewhere.status is DeliveryStatus.PENDING
    async with uow_factory() as uow:  # already withdrawn: not again
        assert await uow.deliveries.withdraw("sp1", [K.HOST_T30, K.HOST_T0], "again") == 0
        await uow.commit()
    assert (await by_key(uow_factory))["t30"].last_error == "rescheduled"


# --------------------------------------------------------------------------- announcements


async def test_announcements_are_idempotent_on_the_message_handle(uow_factory: UnitOfWorkFactory) -> None:
    await add_spaces(uow_factory, space("sp1"), space("sp2"))
    m1 = MessageRef(Platform.TELEGRAM, CHAT.id, "10")
    m2 = MessageRef(Platform.TELEGRAM, OTHER_CHAT.id, "11")
    async with uow_factory() as uow:
        await uow.announcements.add(Announcement("sp1", m1))
        await uow.announcements.add(Announcement("sp1", m2))
        await uow.announcements.add(Announcement("sp1", m1))
        await uow.commit()
    async with uow_factory() as uow:
        await uow.announcements.add(Announcement("sp1", m1))
        await uow.announcements.add(Announcement("sp2", m1))  # a handle belongs to one Space
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.announcements.list("sp1") == [Announcement("sp1", m1), Announcement("sp1", m2)]
        assert await uow.announcements.list("sp2") == []


# --------------------------------------------------------------------------- users, communities, inbound


async def test_user_profiles(uow_factory: UnitOfWorkFactory) -> None:
    full = UserProfile(
        ALICE, tz="Europe/Paris", locale="fr", dm_reachable=True, dm_channel="D1", display_name="Al"
    )
    same_id_elsewhere = UserProfile(UserRef(Platform.DISCORD, ALICE.id), locale="en")
    async with uow_factory() as uow:
        assert await uow.users.get(ALICE) is None
        await uow.users.upsert(full)
        await uow.users.upsert(same_id_elsewhere)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.users.get(ALICE) == full
        assert await uow.users.get_many([ALICE, BOB, ALICE]) == {ALICE: full}
        assert await uow.users.get_many([]) == {}
        await uow.users.upsert(UserProfile(ALICE, locale="de"))  # replaces the whole profile
        await uow.users.set_reachable(BOB, False)  # creates a profile if missing
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.users.get(ALICE) == UserProfile(ALICE, locale="de")
        assert await uow.users.get(BOB) == UserProfile(BOB, dm_reachable=False)
        await uow.users.set_reachable(ALICE, False)  # changes only dm_reachable
        await uow.users.set_reachable(BOB, True)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.users.get_many([ALICE, BOB, same_id_elsewhere.user]) == {
            ALICE: UserProfile(ALICE, locale="de", dm_reachable=False),
            BOB: UserProfile(BOB, dm_reachable=True),
            same_id_elsewhere.user: same_id_elsewhere,
        }


async def test_lock_creates_an_empty_profile_and_keeps_an_existing_one(
    uow_factory: UnitOfWorkFactory,
) -> None:
    async with uow_factory() as uow:
        await uow.users.upsert(UserProfile(ALICE, tz="Europe/Paris", locale="fr"))
        await uow.users.lock(ALICE)
        await uow.users.lock(BOB)
        await uow.users.lock(BOB)  # twice in one unit of work: no error
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.users.get(ALICE) == UserProfile(ALICE, tz="Europe/Paris", locale="fr")
        assert await uow.users.get(BOB) == UserProfile(BOB)


async def test_communities(uow_factory: UnitOfWorkFactory) -> None:
    full = Community(CHAT, tz="Europe/Paris", locale="fr", moderator_role="mods")
    async with uow_factory() as uow:
        assert await uow.communities.get(CHAT) is None
        await uow.communities.upsert(full)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.communities.get(CHAT) == full
        assert await uow.communities.get(OTHER_CHAT) is None
        await uow.communities.upsert(Community(CHAT, locale="de"))  # replaces the whole row
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.communities.get(CHAT) == Community(CHAT, locale="de")


async def test_inbound_remember_returns_the_earlier_result(uow_factory: UnitOfWorkFactory) -> None:
    async with uow_factory() as uow:
        assert await uow.inbound.remember(Platform.TELEGRAM, "upd-1", "A") is None
        assert await uow.inbound.remember(Platform.TELEGRAM, "upd-1", "B") == "A"  # same transaction
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.inbound.remember(Platform.TELEGRAM, "upd-1", "C") == "A"
        assert await uow.inbound.remember(Platform.DISCORD, "upd-1", "D") is None  # per platform
        assert await uow.inbound.remember(Platform.TELEGRAM, "upd-2", "E") is None
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.inbound.remember(Platform.TELEGRAM, "upd-1", "F") == "A"
        assert await uow.inbound.remember(Platform.DISCORD, "upd-1", "G") == "D"
        assert await uow.inbound.remember(Platform.TELEGRAM, "upd-3", "H") is None
        # not committed: upd-3 is not remembered
    async with uow_factory() as uow:
        assert await uow.inbound.remember(Platform.TELEGRAM, "upd-3", "I") is None


async def test_conversations_are_one_per_chat_and_person_and_round_trip(
    uow_factory: UnitOfWorkFactory,
) -> None:
    title = ConversationStep("title", questions=("reply:ev:1:0",))
    time = ConversationStep("time", (("title", "Café « AMA » #2"),), ("reply:ev:2:0", "reply:ev:2:1"))
    mine = Conversation(CHAT, ALICE, time, T0 + timedelta(minutes=10), request_id="ev:2", before=title)
    async with uow_factory() as uow:
        assert await uow.conversations.get(CHAT, ALICE) is None
        await uow.conversations.put(Conversation(CHAT, ALICE, title, T0))
        await uow.conversations.put(mine)  # replaces: one conversation per (chat, person)
        await uow.conversations.put(Conversation(OTHER_CHAT, ALICE, title, T0))
        await uow.conversations.put(Conversation(CHAT, BOB, title, T0))
        await uow.commit()
    async with uow_factory() as uow:
        found = await uow.conversations.get(CHAT, ALICE)
        assert found == mine and found.state.field("title") == "Café « AMA » #2"
        assert found.expires_at.tzinfo is not None
        assert (await uow.conversations.get(OTHER_CHAT, ALICE)) == Conversation(OTHER_CHAT, ALICE, title, T0)
        await uow.conversations.delete(CHAT, ALICE)
        await uow.conversations.delete(CHAT, ALICE)  # nothing to forget: no error
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.conversations.get(CHAT, ALICE) is None
        assert await uow.conversations.get(CHAT, BOB) is not None


async def test_prune_deletes_conversations_expired_before_the_request_ids_cut_off(
    uow_factory: UnitOfWorkFactory, outbox: Outbox
) -> None:
    step = ConversationStep("title")
    async with uow_factory() as uow:
        await uow.conversations.put(Conversation(CHAT, ALICE, step, T0 - timedelta(seconds=1)))
        await uow.conversations.put(Conversation(CHAT, BOB, step, T0))
        await uow.commit()
    assert await outbox.prune(settled_before=T0, requests_before=T0) == 1
    async with uow_factory() as uow:
        assert await uow.conversations.get(CHAT, ALICE) is None
        assert await uow.conversations.get(CHAT, BOB) is not None


# --------------------------------------------------------------------------- unit of work


async def _write_everything(uow: UnitOfWork) -> None:
    await uow.spaces.add(space())
    await uow.subscriptions.add(Subscription("sp1", ALICE, T0))
    await uow.deliveries.add([row("sp1", "k1", T0 - timedelta(minutes=1))])
    await uow.deliveries.fan_out("sp1", 1, DeliveryKind.LIVE_NOTICE, T0, "live")
    await uow.announcements.add(Announcement("sp1", MessageRef(Platform.TELEGRAM, CHAT.id, "1")))
    await uow.users.upsert(UserProfile(BOB, locale="fr"))
    await uow.users.set_reachable(ALICE, False)
    await uow.communities.upsert(Community(CHAT, locale="fr"))
    assert await uow.inbound.remember(Platform.TELEGRAM, "upd-1", "sp1") is None
    # the unit of work reads its own writes
    assert await uow.spaces.get("sp1") == space()
    assert await uow.subscriptions.count("sp1") == 1
    assert len(await uow.deliveries.list_for_space("sp1")) == 2


async def _assert_nothing_persisted(uow_factory: UnitOfWorkFactory, outbox: Outbox) -> None:
    async with uow_factory() as uow:
        assert await uow.spaces.get("sp1") is None
        assert await uow.spaces.count_open_by_host(HOST) == 0
        assert await uow.subscriptions.count("sp1") == 0
        assert await uow.deliveries.list_for_space("sp1") == []
        assert await uow.announcements.list("sp1") == []
        assert await uow.users.get_many([ALICE, BOB]) == {}
        assert await uow.communities.get(CHAT) is None
        assert await uow.inbound.remember(Platform.TELEGRAM, "upd-1", "again") is None
    assert await outbox.next_due() is None
    assert await outbox.claim_due(now=T0 + timedelta(days=1), worker="w1", lease=LEASE, batch=10) == []


async def test_an_exception_rolls_everything_back(uow_factory: UnitOfWorkFactory, outbox: Outbox) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        async with uow_factory() as uow:
            await _write_everything(uow)
            raise RuntimeError("boom")
    await _assert_nothing_persisted(uow_factory, outbox)


async def test_leaving_without_commit_persists_nothing(
    uow_factory: UnitOfWorkFactory, outbox: Outbox
) -> None:
    async with uow_factory() as uow:
        await _write_everything(uow)
    await _assert_nothing_persisted(uow_factory, outbox)


async def test_commit_persists_and_later_writes_need_another_commit(
    uow_factory: UnitOfWorkFactory, outbox: Outbox
) -> None:
    async with uow_factory() as uow:
        await _write_everything(uow)
        await uow.commit()
        await uow.spaces.add(space("sp2"))  # after the commit: a new transaction, never committed
    async with uow_factory() as uow:
        assert await uow.spaces.get("sp1") == space()
        assert await uow.spaces.get("sp2") is None
        assert await uow.users.get(ALICE) == UserProfile(ALICE, dm_reachable=False)
        assert await uow.inbound.remember(Platform.TELEGRAM, "upd-1", "again") == "sp1"
    assert await outbox.next_due() == T0 - timedelta(minutes=1)


# --------------------------------------------------------------------------- the engine's outbox


async def test_claim_due_leaves_the_lanes_it_is_told_to_skip(
    uow_factory: UnitOfWorkFactory, outbox: Outbox
) -> None:
    """A lane is a recipient's head (``slack@T1``): every row to that workspace, whatever its kind; a lane
    name's LIKE wildcards are literal (``T_`` skips T_ only)."""
    await add_spaces(uow_factory, space())
    slack = {"platform": Platform.SLACK}
    await add_rows(
        uow_factory,
        [
            row("sp1", "a1", T0 - timedelta(minutes=3), recipient="slack@T1:user:U1", **slack),
            row("sp1", "a2", T0 - timedelta(minutes=3), recipient="slack@T1:chat:C1", **slack),
            row("sp1", "b1", T0 - timedelta(minutes=2), recipient="slack@T2:user:U1", **slack),
            row("sp1", "w1", T0 - timedelta(minutes=2), recipient="slack@T_:user:U1", **slack),
            row("sp1", "t1", T0 - timedelta(minutes=1)),  # telegram:user:t1
        ],
    )
    got = await outbox.claim_due(now=T0, worker="w1", lease=LEASE, batch=10, skip=["slack@T1", "slack@T_"])
    assert [d.key for d in got] == ["b1", "t1"]
    rest = await outbox.claim_due(now=T0, worker="w1", lease=LEASE, batch=10)
    assert [d.key for d in rest] == ["a1", "a2", "w1"]


async def test_claim_due_takes_due_rows_oldest_first_up_to_the_batch(
    uow_factory: UnitOfWorkFactory, outbox: Outbox
) -> None:
    await add_spaces(uow_factory, space())
    m = timedelta(minutes=1)
    for d in (
        row("sp1", "late", T0 - 5 * m),
        row("sp1", "now", T0),  # due exactly now: due
        row("sp1", "early", T0 - 10 * m),
        row("sp1", "early-too", T0 - 10 * m),  # same due time: by id
        row("sp1", "future", T0 + m),
        row("sp1", "sent", T0 - 20 * m, status=DeliveryStatus.SENT),
        row("sp1", "withdrawn", T0 - 20 * m, status=DeliveryStatus.WITHDRAWN),
        row("sp1", "dead", T0 - 20 * m, status=DeliveryStatus.DEAD, attempts=5),
    ):
        await add_rows(uow_factory, [d])
    assert await outbox.claim_due(now=T0, worker="w1", lease=LEASE, batch=0) == []
    first = await outbox.claim_due(now=T0, worker="w1", lease=LEASE, batch=3)
    assert [d.key for d in first] == ["early", "early-too", "late"]
    for d in first:
        assert (d.status, d.claimed_by, d.lease_until, d.attempts) == (
            DeliveryStatus.CLAIMED,
            "w1",
            T0 + LEASE,
            1,
        )
    rest = await outbox.claim_due(now=T0, worker="w2", lease=LEASE, batch=10)
    assert [d.key for d in rest] == ["now"]
    assert await outbox.claim_due(now=T0, worker="w3", lease=LEASE, batch=10) == []
    # what was handed out is what is stored
    stored = await by_key(uow_factory)
    for d in [*first, *rest]:
        assert stored[d.key] == d
    assert stored["future"].status is DeliveryStatus.PENDING and stored["future"].attempts == 0


async def test_a_held_lease_is_respected_and_an_expired_one_reclaimed(
    uow_factory: UnitOfWorkFactory, outbox: Outbox
) -> None:
    await add_spaces(uow_factory, space())
    await add_rows(uow_factory, [row("sp1", "k", T0)])
    (mine,) = await outbox.claim_due(now=T0, worker="w1", lease=LEASE, batch=10)
    almost = T0 + LEASE - timedelta(microseconds=1)
    assert await outbox.claim_due(now=almost, worker="w2", lease=LEASE, batch=10) == []
    # lease_until is the first instant the row is free again (next_due wakes the others exactly then)
    assert await outbox.next_due() == T0 + LEASE
    later = T0 + LEASE
    (theirs,) = await outbox.claim_due(now=later, worker="w2", lease=LEASE, batch=10)
    assert theirs.claim is not None and theirs.claim != mine.claim
    assert theirs.id == mine.id
    assert (theirs.claimed_by, theirs.lease_until, theirs.attempts) == ("w2", later + LEASE, 2)
    assert await outbox.settle(row_id(mine), worker="w1", status=DeliveryStatus.SENT, now=later) is False
    assert await outbox.settle(row_id(theirs), worker="w2", status=DeliveryStatus.SENT, now=later) is True


async def test_settle_records_the_outcome_only_for_the_lease_holder(
    uow_factory: UnitOfWorkFactory, outbox: Outbox
) -> None:
    await add_spaces(uow_factory, space())
    await add_rows(uow_factory, [row("sp1", "k", T0 - timedelta(minutes=1))])
    (d,) = await outbox.claim_due(now=T0, worker="w1", lease=LEASE, batch=10)
    sent_at = T0 + timedelta(seconds=5)
    assert await outbox.settle(row_id(d), worker="w2", status=DeliveryStatus.SENT, now=sent_at) is False
    assert (await by_key(uow_factory))["k"] == d  # untouched
    ok = await outbox.settle(
        row_id(d),
        worker="w1",
        status=DeliveryStatus.SENT,
        now=sent_at,
        sent_ref="telegram:msg:1:2",
        late_by=65.0,
    )
    assert ok is True
    assert (await by_key(uow_factory))["k"] == replace(
        d,
        status=DeliveryStatus.SENT,
        lease_until=None,  # claimed_by stays: who sent it
        claim=None,
        sent_ref="telegram:msg:1:2",
        sent_at=sent_at,
        late_by=65.0,
    )
    # settled: not claimed any more, so not settled again
    assert await outbox.settle(row_id(d), worker="w1", status=DeliveryStatus.DEAD, now=sent_at) is False
    assert await outbox.settle(10**9, worker="w1", status=DeliveryStatus.SENT, now=sent_at) is False
    with pytest.raises(ValueError):
        await outbox.settle(row_id(d), worker="w1", status=DeliveryStatus.CLAIMED, now=sent_at)


async def test_settle_pending_frees_the_row_for_a_retry(
    uow_factory: UnitOfWorkFactory, outbox: Outbox
) -> None:
    await add_spaces(uow_factory, space())
    await add_rows(uow_factory, [row("sp1", "k", T0)])
    s = timedelta(seconds=1)
    (d,) = await outbox.claim_due(now=T0, worker="w1", lease=LEASE, batch=10)
    assert await outbox.settle(
        row_id(d), worker="w1", status=DeliveryStatus.PENDING, now=T0, error="HTTP 502", due_at=T0 + 30 * s
    )
    assert (await by_key(uow_factory))["k"] == replace(
        d,
        status=DeliveryStatus.PENDING,
        due_at=T0 + 30 * s,
        claimed_by=None,
        lease_until=None,
        claim=None,
        attempts=1,  # the attempt counts
        last_error="HTTP 502",
    )
    assert await outbox.next_due() == T0 + 30 * s
    assert await outbox.claim_due(now=T0 + 29 * s, worker="w2", lease=LEASE, batch=10) == []
    (d,) = await outbox.claim_due(now=T0 + 30 * s, worker="w2", lease=LEASE, batch=10)
    assert d.attempts == 2
    # a rate limit gives the attempt back
    assert await outbox.settle(
        row_id(d),
        worker="w2",
        status=DeliveryStatus.PENDING,
        now=T0 + 30 * s,
        error="rate limited",
        due_at=T0 + 40 * s,
        refund_attempt=True,
    )
    got = (await by_key(uow_factory))["k"]
    assert (got.status, got.attempts, got.due_at, got.last_error) == (
        DeliveryStatus.PENDING,
        1,
        T0 + 40 * s,
        "rate limited",
    )
    # no due_at: due now
    (d,) = await outbox.claim_due(now=T0 + 40 * s, worker="w1", lease=LEASE, batch=10)
    assert await outbox.settle(row_id(d), worker="w1", status=DeliveryStatus.PENDING, now=T0 + 50 * s)
    assert await outbox.next_due() == T0 + 50 * s


async def test_settle_many_records_each_outcome_whose_lease_is_held(
    uow_factory: UnitOfWorkFactory, outbox: Outbox
) -> None:
    assert await outbox.settle_many([], worker="w1", now=T0) == []
    await add_spaces(uow_factory, space())
    await add_rows(
        uow_factory,
        [
            row("sp1", "theirs", T0 - timedelta(minutes=1)),
            *(row("sp1", k, T0) for k in ("sent", "retry", "twice")),
        ],
    )
    mine = {d.key: d for d in await outbox.claim_due(now=T0, worker="w1", lease=LEASE, batch=3)}
    assert sorted(mine) == ["retry", "sent", "theirs"]
    (twice,) = await outbox.claim_due(now=T0, worker="w1", lease=LEASE, batch=10)
    later = T0 + LEASE + timedelta(seconds=1)  # "theirs": w1's lease ran out and w2 took it over
    (theirs,) = await outbox.claim_due(now=later, worker="w2", lease=LEASE, batch=1)
    assert theirs.key == "theirs"
    # w1's leases on "sent", "retry" ran out too, but nobody took them over: still w1's to settle
    results = await outbox.settle_many(
        [
            Outcome(row_id(mine["sent"]), DeliveryStatus.SENT, sent_ref="telegram:msg:1:2", late_by=1.5),
            Outcome(row_id(mine["retry"]), DeliveryStatus.PENDING, error="HTTP 502", due_at=later + LEASE),
            Outcome(row_id(theirs), DeliveryStatus.SENT),
            Outcome(10**9, DeliveryStatus.SENT),
            Outcome(row_id(twice), DeliveryStatus.SKIPPED, error="stale"),
            Outcome(row_id(twice), DeliveryStatus.SENT),  # already settled by the outcome before
        ],
        worker="w1",
        now=later,
    )
    assert results == [True, True, False, False, True, False]
    rows = await by_key(uow_factory)
    assert (rows["sent"].status, rows["sent"].sent_ref, rows["sent"].sent_at, rows["sent"].late_by) == (
        DeliveryStatus.SENT,
        "telegram:msg:1:2",
        later,
        1.5,
    )
    assert (rows["retry"].status, rows["retry"].due_at, rows["retry"].claimed_by) == (
        DeliveryStatus.PENDING,
        later + LEASE,
        None,
    )
    assert rows["theirs"] == theirs  # untouched: w2 holds it
    assert (rows["twice"].status, rows["twice"].last_error) == (DeliveryStatus.SKIPPED, "stale")


async def test_settle_many_with_an_invalid_outcome_records_none(
    uow_factory: UnitOfWorkFactory, outbox: Outbox
) -> None:
    await add_spaces(uow_factory, space())
    await add_rows(uow_factory, [row("sp1", "a", T0), row("sp1", "b", T0)])
    a, b = await outbox.claim_due(now=T0, worker="w1", lease=LEASE, batch=10)
    with pytest.raises(ValueError):
        await outbox.settle_many(
            [Outcome(row_id(a), DeliveryStatus.SENT), Outcome(row_id(b), DeliveryStatus.CLAIMED)],
            worker="w1",
            now=T0,
        )
    assert {d.key: d for d in await rows_of(uow_factory)} == {"a": a, "b": b}  # one transaction: nothing


async def test_settle_keeps_the_fields_it_is_not_given(
    uow_factory: UnitOfWorkFactory, outbox: Outbox
) -> None:
    await add_spaces(uow_factory, space())
    await add_rows(uow_factory, [row("sp1", "retried", T0), row("sp1", "unreachable", T0)])
    claimed = {d.key: d for d in await outbox.claim_due(now=T0, worker="w1", lease=LEASE, batch=10)}
    r, u = row_id(claimed["retried"]), row_id(claimed["unreachable"])
    assert await outbox.settle(
        r, worker="w1", status=DeliveryStatus.PENDING, now=T0, error="HTTP 502", due_at=T0
    )
    (again,) = await outbox.claim_due(now=T0, worker="w1", lease=LEASE, batch=10)
    assert again.id == r
    assert await outbox.settle(
        r, worker="w1", status=DeliveryStatus.SENT, now=T0, sent_ref="telegram:msg:1:9"
    )
    assert await outbox.settle(u, worker="w1", status=DeliveryStatus.FALLBACK, now=T0, error="unreachable")
    rows = await by_key(uow_factory)
    assert rows["retried"].last_error == "HTTP 502"  # the earlier reason stays: no error given
    assert rows["retried"].late_by is None and rows["retried"].sent_at == T0
    assert (rows["unreachable"].status, rows["unreachable"].last_error) == (
        DeliveryStatus.FALLBACK,
        "unreachable",
    )
    assert rows["unreachable"].sent_at is None and rows["unreachable"].sent_ref is None
    assert rows["unreachable"].claimed_by == "w1" and rows["unreachable"].lease_until is None


async def test_next_due_is_the_earliest_pending_row(uow_factory: UnitOfWorkFactory, outbox: Outbox) -> None:
    assert await outbox.next_due() is None
    await add_spaces(uow_factory, space())
    m = timedelta(minutes=1)
    await add_rows(
        uow_factory,
        [
            row("sp1", "later", T0 + 10 * m),
            row("sp1", "sooner", T0 + 5 * m),
            row("sp1", "sent", T0 - 60 * m, status=DeliveryStatus.SENT),
            row("sp1", "claimed", T0 - 30 * m),
        ],
    )
    assert await outbox.next_due() == T0 - 30 * m
    (claimed,) = await outbox.claim_due(now=T0 - 29 * m, worker="w1", lease=LEASE, batch=10)
    assert claimed.key == "claimed"
    # a claimed row counts by its lease's end: a dead claimer's rows are taken over then
    assert await outbox.next_due() == T0 - 29 * m + LEASE
    assert await outbox.settle(row_id(claimed), worker="w1", status=DeliveryStatus.SENT, now=T0)
    assert await outbox.next_due() == T0 + 5 * m  # settled rows do not count


async def test_counts_lists_every_status(uow_factory: UnitOfWorkFactory, outbox: Outbox) -> None:
    zero = {str(s): 0 for s in DeliveryStatus}
    assert await outbox.counts() == zero
    await add_spaces(uow_factory, space())
    await add_rows(
        uow_factory,
        [
            row("sp1", "p1", T0 + timedelta(hours=1)),
            row("sp1", "p2", T0 + timedelta(hours=1)),
            row("sp1", "c", T0),
            row("sp1", "s", T0 - timedelta(hours=1), status=DeliveryStatus.SENT),
            row("sp1", "w", T0 - timedelta(hours=1), status=DeliveryStatus.WITHDRAWN),
        ],
    )
    await outbox.claim_due(now=T0, worker="w1", lease=LEASE, batch=10)
    assert await outbox.counts() == {**zero, "pending": 2, "claimed": 1, "sent": 1, "withdrawn": 1}


async def test_prune_deletes_only_settled_rows_of_finished_spaces_and_old_request_ids(
    uow_factory: UnitOfWorkFactory, outbox: Outbox
) -> None:
    h = timedelta(hours=1)
    await add_spaces(uow_factory, space("over", status=SpaceStatus.ENDED), space("open"))
    await add_rows(
        uow_factory,
        [
            row("over", "sent-old", T0 - 100 * h),
            row("over", "dead-old", T0 - 100 * h),
            row("over", "sent-new", T0),
            row("open", "open-old", T0 - 100 * h),
        ],
    )
    claimed = await outbox.claim_due(now=T0, worker="w", lease=LEASE, batch=10)
    status = {"dead-old": DeliveryStatus.DEAD}
    await outbox.settle_many(
        [Outcome(row_id(d), status.get(d.key, DeliveryStatus.SENT)) for d in claimed], worker="w", now=T0
    )
    async with uow_factory() as uow:
        assert await uow.inbound.remember(Platform.TELEGRAM, "u1", "x") is None
        await uow.commit()
    deleted = await outbox.prune(
        settled_before=T0 - h, requests_before=datetime(2000, 1, 1, tzinfo=UTC), chunk=1
    )
    assert deleted == 1
    assert set(await by_key(uow_factory, "over")) == {"dead-old", "sent-new"}  # dead rows are kept
    assert set(await by_key(uow_factory, "open")) == {"open-old"}  # its Space may still insert keys
    # request ids: recorded "now" (wall clock), so a cut-off in the future removes it
    assert await outbox.prune(settled_before=T0 - h, requests_before=datetime.now(UTC) + h, chunk=1) == 1
    async with uow_factory() as uow:
        assert await uow.inbound.remember(Platform.TELEGRAM, "u1", "y") is None  # forgotten


async def test_tally_counts_by_kind_about_and_status_and_withdraw_can_target_one_recipient(
    uow_factory: UnitOfWorkFactory,
) -> None:
    await add_spaces(uow_factory, space("sp1"))
    await add_rows(
        uow_factory,
        [
            row("sp1", "a"),
            row("sp1", "b"),
            row("sp1", "m", kind=DeliveryKind.MENTION, about=DeliveryKind.LIVE_NOTICE, recipient=str(CHAT)),
        ],
    )
    async with uow_factory() as uow:
        assert (
            await uow.deliveries.withdraw(
                "sp1", [DeliveryKind.LIVE_NOTICE], "unsubscribed", recipient="telegram:user:a"
            )
            == 1
        )
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.deliveries.tally("sp1") == {
            (DeliveryKind.LIVE_NOTICE, None, DeliveryStatus.WITHDRAWN): 1,
            (DeliveryKind.LIVE_NOTICE, None, DeliveryStatus.PENDING): 1,
            (DeliveryKind.MENTION, DeliveryKind.LIVE_NOTICE, DeliveryStatus.PENDING): 1,
        }
        assert await uow.deliveries.tally("nope") == {}


# --------------------------------------------------------------------------- priorities, claims, renewals


async def test_claim_due_takes_the_most_urgent_first_then_the_oldest(
    uow_factory: UnitOfWorkFactory, outbox: Outbox
) -> None:
    await add_spaces(uow_factory, space())
    m = timedelta(minutes=1)
    await add_rows(
        uow_factory,
        [
            *(row("sp1", f"fan{i}", T0 - 10 * m) for i in range(3)),  # a fan-out, due for a while
            row("sp1", "t0", T0, kind=DeliveryKind.HOST_T0, recipient=str(HOST)),  # just due
            row("sp1", "edit", T0 - m, kind=DeliveryKind.CARD_EDIT, recipient=f"{CHAT}:msg:1"),
            row("sp1", "later-t0", T0 + m, kind=DeliveryKind.HOST_T0, recipient=str(HOST)),  # not due
            row("sp1", "custom", T0 - 20 * m, priority=1),  # a priority given by the writer is kept
        ],
    )
    stored = await by_key(uow_factory)
    assert stored["t0"].priority == rules.PRIORITY_HOST and stored["fan0"].priority == rules.PRIORITY_BULK
    assert stored["edit"].priority == rules.PRIORITY_CHAT and stored["custom"].priority == 1
    first = await outbox.claim_due(now=T0, worker="w1", lease=LEASE, batch=3)
    assert [d.key for d in first] == ["custom", "t0", "edit"]
    assert len({d.claim for d in first}) == 1 and first[0].claim is not None  # one token per claim
    rest = await outbox.claim_due(now=T0, worker="w2", lease=LEASE, batch=10)
    assert [d.key for d in rest] == ["fan0", "fan1", "fan2"]
    assert rest[0].claim != first[0].claim


async def test_a_claim_token_fences_outcomes_and_renewals(
    uow_factory: UnitOfWorkFactory, outbox: Outbox
) -> None:
    await add_spaces(uow_factory, space())
    await add_rows(uow_factory, [row("sp1", "a", T0), row("sp1", "b", T0)])
    a, b = await outbox.claim_due(now=T0, worker="w1", lease=LEASE, batch=10)
    token = a.claim
    assert token is not None and b.claim == token
    # renewed while w1 lives: the lease moves on, nobody can take the rows
    renewed_at = T0 + LEASE / 2
    assert await outbox.renew([token], worker="w1", now=renewed_at, lease=LEASE) == {
        token: {row_id(a), row_id(b)}
    }
    assert await outbox.claim_due(now=T0 + LEASE, worker="w2", lease=LEASE, batch=10) == []
    assert (await by_key(uow_factory))["a"].lease_until == renewed_at + LEASE
    # w1 stalls; after its renewed lease, a process reusing the worker id "w1" claims the rows again
    again = await outbox.claim_due(now=renewed_at + LEASE, worker="w1", lease=LEASE, batch=10)
    assert {d.key for d in again} == {"a", "b"} and again[0].claim not in (None, token)
    # the stalled claim can neither renew nor settle what is now the later claim's
    assert await outbox.renew([token], worker="w1", now=renewed_at + LEASE, lease=LEASE) == {token: set()}
    assert await outbox.renew(["unknown"], worker="w1", now=renewed_at + LEASE, lease=LEASE) == {
        "unknown": set()
    }
    assert await outbox.renew([], worker="w1", now=renewed_at, lease=LEASE) == {}
    old = Outcome(row_id(a), DeliveryStatus.SENT, claim=token)
    new = Outcome(row_id(b), DeliveryStatus.SENT, claim=again[0].claim)
    assert await outbox.settle_many([old, new], worker="w1", now=renewed_at + LEASE) == [False, True]
    assert not await outbox.settle(
        row_id(a), worker="w1", status=DeliveryStatus.SENT, now=renewed_at + LEASE, claim=token
    )
    rows = await by_key(uow_factory)
    assert rows["a"].status is DeliveryStatus.CLAIMED and rows["a"].claim == again[0].claim
    assert rows["b"].status is DeliveryStatus.SENT and rows["b"].claim is None
    # another worker's token renews nothing of w1's
    assert await outbox.renew([again[0].claim or ""], worker="w2", now=renewed_at, lease=LEASE) == {
        again[0].claim: set()
    }


async def test_fan_out_settles_known_unreachable_subscribers_with_their_mention_at_once(
    uow_factory: UnitOfWorkFactory,
) -> None:
    await add_spaces(uow_factory, space("sp1"))
    async with uow_factory() as uow:
        await uow.subscriptions.add(Subscription("sp1", ALICE, T0, via_chat=OTHER_CHAT))
        await uow.subscriptions.add(Subscription("sp1", BOB, T0))  # privately: no group to mention him in
        await uow.subscriptions.add(Subscription("sp1", CAROL, T0))
        await uow.users.set_reachable(ALICE, False)
        await uow.users.set_reachable(BOB, False)
        await uow.users.set_reachable(CAROL, True)
        await uow.commit()
    prefix = "space:sp1:live_notice"
    async with uow_factory() as uow:
        assert await uow.deliveries.fan_out("sp1", 1, DeliveryKind.LIVE_NOTICE, T0, prefix) == 3
        await uow.commit()
    rows = await by_key(uow_factory)
    assert sorted(rows) == sorted(
        [f"{prefix}:{u}" for u in (ALICE, BOB, CAROL)] + [f"{prefix}:{ALICE}:mention"]
    )
    dm = rows[f"{prefix}:{ALICE}"]
    assert (dm.status, dm.last_error) == (DeliveryStatus.FALLBACK, rules.KNOWN_UNREACHABLE)
    dm = rows[f"{prefix}:{BOB}"]  # never named in a private chat: unreachable, recorded
    assert (dm.status, dm.last_error) == (DeliveryStatus.DEAD, rules.NO_GROUP_TO_MENTION)
    assert rows[f"{prefix}:{CAROL}"].status is DeliveryStatus.PENDING
    alice = rows[f"{prefix}:{ALICE}:mention"]
    assert alice == Delivery(
        key=f"{prefix}:{ALICE}:mention",
        kind=DeliveryKind.MENTION,
        platform=Platform.TELEGRAM,
        recipient=str(OTHER_CHAT),  # where she subscribed from
        space_id="sp1",
        revision=1,
        due_at=T0,
        subject=str(ALICE),
        about=DeliveryKind.LIVE_NOTICE,
        priority=rules.PRIORITY_CHAT,
        id=alice.id,
    )
    # a second fan-out with the same prefix adds nothing, mentions included
    async with uow_factory() as uow:
        assert await uow.deliveries.fan_out("sp1", 1, DeliveryKind.LIVE_NOTICE, T0, prefix) == 0
        await uow.commit()
    assert len(await rows_of(uow_factory)) == 4


async def test_release_gives_back_what_a_dead_process_of_the_same_worker_id_held(
    uow_factory: UnitOfWorkFactory, outbox: Outbox
) -> None:
    await add_spaces(uow_factory, space())
    await add_rows(uow_factory, [row("sp1", k, T0) for k in ("a", "b", "c")])
    mine = await outbox.claim_due(now=T0, worker="w1", lease=LEASE, batch=2)
    (theirs,) = await outbox.claim_due(now=T0, worker="w2", lease=LEASE, batch=2)
    assert await outbox.release(worker="w1", now=T0 + timedelta(seconds=1)) == 2
    rows = await by_key(uow_factory)
    for d in mine:
        got = rows[d.key]
        assert (got.status, got.claimed_by, got.lease_until, got.claim) == (
            DeliveryStatus.PENDING,
            None,
            None,
            None,
        )
        assert got.due_at == d.due_at and got.attempts == 1  # its due time kept; the crash was an attempt
    assert rows[theirs.key] == theirs  # another worker's claim is untouched
    again = await outbox.claim_due(now=T0 + timedelta(seconds=1), worker="w1", lease=LEASE, batch=10)
    assert {d.key for d in again} == {d.key for d in mine}
    assert await outbox.release(worker="nobody", now=T0) == 0


# --------------------------------------------------------------------------- bridged voice channels


async def test_bridges_are_one_per_channel_in_the_order_added_and_read_for_many_spaces_at_once(
    uow_factory: UnitOfWorkFactory,
) -> None:
    voice = [ChatRef(Platform.DISCORD, str(n), scope="9") for n in range(3)]
    mod = UserRef(Platform.DISCORD, "5")
    await add_spaces(uow_factory, space("sp1"), space("sp2"), space("sp3"))
    async with uow_factory() as uow:
        assert await uow.bridges.add(BridgedChannel("sp1", voice[2], mod, T0))
        assert await uow.bridges.add(BridgedChannel("sp1", voice[0], mod, T0 + timedelta(seconds=1)))
        assert not await uow.bridges.add(BridgedChannel("sp1", voice[2], HOST, T0 + timedelta(hours=1)))
        assert await uow.bridges.add(BridgedChannel("sp2", voice[1], mod, T0))
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.bridges.count("sp1") == 2 and await uow.bridges.count("sp3") == 0
        first = await uow.bridges.list("sp1")
        assert [b.channel for b in first] == [voice[2], voice[0]] and first[0].added_by == mod  # kept
        many = await uow.bridges.list_many(["sp1", "sp2", "sp3", "unknown"])
        assert set(many) == {"sp1", "sp2"} and many["sp1"] == first
        assert [b.channel for b in many["sp2"]] == [voice[1]]
        assert await uow.bridges.remove("sp1", voice[2]) and not await uow.bridges.remove("sp1", voice[2])
        await uow.commit()
    async with uow_factory() as uow:
        assert [b.channel for b in await uow.bridges.list("sp1")] == [voice[0]]
    with pytest.raises(REJECTED):  # a bridge names a Space that exists (foreign key)
        async with uow_factory() as uow:
            await uow.bridges.add(BridgedChannel("missing", voice[0], mod, T0))
            await uow.commit()


async def test_live_with_source_lists_live_spaces_that_have_one_by_start(
    uow_factory: UnitOfWorkFactory,
) -> None:
    live = {"status": SpaceStatus.LIVE}
    await add_spaces(
        uow_factory,
        space("late", audio_source="browser", started_at=T0 + timedelta(minutes=5), **live),
        space("early", audio_source="https://a.example/s", started_at=T0, **live),
        space("silent", started_at=T0, **live),
        space("soon", audio_source="browser"),
    )
    async with uow_factory() as uow:
        assert [s.id for s in await uow.spaces.live_with_source(limit=10)] == ["early", "late"]
        assert [s.id for s in await uow.spaces.live_with_source(limit=1)] == ["early"]


# --------------------------------------------------------------------------- links (core.ports.LinkStore)

TG_GROUP = ChatRef(Platform.TELEGRAM, "-100")
DC_CHANNEL = ChatRef(Platform.DISCORD, "55", scope="9")
SL_CHANNEL = ChatRef(Platform.SLACK, "C1", scope="T1")
CONSOLE = ChatRef(Platform.CONSOLE, "console")
DC_ALICE = UserRef(Platform.DISCORD, "alice-dc")


async def test_links_group_merge_and_leave(uow_factory: UnitOfWorkFactory) -> None:
    """Chats grouped, groups merged, a chat left alone by the others' leaving is unlinked too; ordered by
    text form; a chat never linked is its own group of one."""

    def by_text(*chats: ChatRef) -> list[ChatRef]:
        return sorted(chats, key=str)

    async with uow_factory() as uow:
        assert await uow.links.chats(TG_GROUP) == [TG_GROUP]
        assert not await uow.links.link_chats(TG_GROUP, TG_GROUP, now=T0)
        assert await uow.links.link_chats(TG_GROUP, DC_CHANNEL, now=T0)
        assert not await uow.links.link_chats(DC_CHANNEL, TG_GROUP, now=T0)  # already one group
        assert await uow.links.link_chats(SL_CHANNEL, CONSOLE, now=T0)
        assert await uow.links.link_chats(CONSOLE, DC_CHANNEL, now=T0)  # a merge of two groups
        await uow.commit()
    async with uow_factory() as uow:
        everyone = by_text(TG_GROUP, DC_CHANNEL, SL_CHANNEL, CONSOLE)
        for chat in everyone:
            assert await uow.links.chats(chat) == everyone
        assert await uow.links.unlink_chat(DC_CHANNEL) == by_text(TG_GROUP, SL_CHANNEL, CONSOLE)
        assert await uow.links.chats(DC_CHANNEL) == [DC_CHANNEL]
        assert await uow.links.unlink_chat(DC_CHANNEL) == []
        assert await uow.links.unlink_chat(TG_GROUP) == by_text(SL_CHANNEL, CONSOLE)
        assert await uow.links.unlink_chat(CONSOLE) == [SL_CHANNEL]
        assert await uow.links.chats(SL_CHANNEL) == [SL_CHANNEL]  # alone: no group any more
        assert await uow.links.unlink_chat(SL_CHANNEL) == []
        # a rolled-back link leaves nothing (links are in the caller's transaction)
        assert await uow.links.link_accounts(ALICE, DC_ALICE, now=T0)
    async with uow_factory() as uow:
        assert await uow.links.accounts(ALICE) == [ALICE]
        assert await uow.links.link_accounts(ALICE, DC_ALICE, now=T0)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.links.accounts(ALICE) == sorted([ALICE, DC_ALICE], key=str)
        assert await uow.links.chats(ChatRef(Platform.TELEGRAM, "alice")) == [
            ChatRef(Platform.TELEGRAM, "alice")
        ]  # the kinds are apart
        assert await uow.links.unlink_account(DC_ALICE) == [ALICE]
        assert await uow.links.accounts(ALICE) == [ALICE]


async def test_fan_out_reaches_a_person_once_on_their_newest_subscription(
    uow_factory: UnitOfWorkFactory,
) -> None:
    """Alice subscribed on Telegram, then on Discord, accounts linked: one live notice, to the Discord
    account; ties on created_at go to the greater user text; counts count people."""
    bob_dc = UserRef(Platform.DISCORD, "bob-dc")
    async with uow_factory() as uow:
        await uow.spaces.add(space())
        await uow.subscriptions.add(Subscription("sp1", ALICE, T0))
        await uow.subscriptions.add(Subscription("sp1", DC_ALICE, T0 + timedelta(minutes=1)))
        await uow.subscriptions.add(Subscription("sp1", BOB, T0))
        await uow.subscriptions.add(Subscription("sp1", bob_dc, T0))  # same instant: user text decides
        await uow.subscriptions.add(Subscription("sp1", CAROL, T0))
        await uow.links.link_accounts(ALICE, DC_ALICE, now=T0)
        await uow.links.link_accounts(bob_dc, BOB, now=T0)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.subscriptions.count("sp1") == 3
        assert await uow.deliveries.fan_out("sp1", 1, DeliveryKind.LIVE_NOTICE, T0, "space:sp1:live") == 3
        rows = await uow.deliveries.list_for_space("sp1")
        got = sorted(r.recipient for r in rows)
        newest_bob = max(str(BOB), str(bob_dc))
        assert got == sorted([str(DC_ALICE), newest_bob, str(CAROL)])
        assert {r.platform for r in rows if r.recipient == str(DC_ALICE)} == {Platform.DISCORD}
