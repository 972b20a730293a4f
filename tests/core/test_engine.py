"""The delivery engine: late and stale policy, retries, fallbacks, dead letters, leases — on every backend."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from bots.runtime.budget import Unlimited
from core.commands import ScheduleSpace, StartSpace, Subscribe
from core.models import DeliveryKind, DeliveryStatus
from core.refs import ChatRef, UserRef
from core.rules import MAX_ATTEMPTS, NO_GROUP_TO_MENTION
from core.services.deliveries import NONCE_LENGTH, DeliveryEngine, EngineConfig, nonce_for
from tests.conftest import CoreEnv, StaticLinks


async def _space(env: CoreEnv, when: str = "2026-11-25 20:00"):  # 19:00 UTC
    space = await env.spaces.schedule(ScheduleSpace(env.actor(), env.chat, "Weekly AMA", when))
    await env.run()
    return space


async def row(env: CoreEnv, kind: DeliveryKind, recipient: str | None = None):
    (found,) = [
        d
        for d in await env.deliveries()
        if d.kind is kind and (recipient is None or d.recipient == recipient)
    ]
    return found


async def test_late_reminder_is_sent_with_a_visible_delayed_mark(core_env: CoreEnv) -> None:
    space = await _space(core_env)
    # the service was down from T-35 to T-18: the T-30 reminder is 12 minutes late, still before the start
    core_env.clock.set(space.starts_at - timedelta(minutes=18))
    core_env.engine.up_since = core_env.clock.now()  # what the workers' heartbeats say
    await core_env.run()
    (dm,) = core_env.platform.dms_to(core_env.host)
    assert any("delayed by 12 min" in line for line in dm.notice.lines)
    r = await row(core_env, DeliveryKind.HOST_T30)
    assert r.status is DeliveryStatus.SENT and r.late_by == 12 * 60


async def test_stale_t30_after_start_time_is_skipped_with_a_reason(core_env: CoreEnv) -> None:
    space = await _space(core_env)
    core_env.clock.set(space.starts_at + timedelta(minutes=3))  # down across both reminders
    core_env.engine.up_since = core_env.clock.now()
    await core_env.run()
    t30, t0 = await row(core_env, DeliveryKind.HOST_T30), await row(core_env, DeliveryKind.HOST_T0)
    assert t30.status is DeliveryStatus.SKIPPED and "after the start time" in (t30.last_error or "")
    assert t0.status is DeliveryStatus.SENT  # T-0 three minutes late still makes sense, and says so
    (dm,) = core_env.platform.dms_to(core_env.host)
    assert any("delayed by 3 min" in line for line in dm.notice.lines)


async def test_starting_withdraws_the_pending_host_reminders(core_env: CoreEnv) -> None:
    space = await _space(core_env)
    await core_env.spaces.start(StartSpace(core_env.actor(), space.id))  # early, before T-30
    core_env.clock.set(space.starts_at)
    await core_env.run()
    assert not core_env.platform.dms_to(core_env.host)
    assert (await row(core_env, DeliveryKind.HOST_T30)).status is DeliveryStatus.WITHDRAWN


async def test_a_t30_claimed_before_the_start_and_decided_after_it_is_skipped(core_env: CoreEnv) -> None:
    env = core_env
    space = await _space(env)

    class BudgetDuringWhichTheHostStarts(Unlimited):
        async def acquire(
            self,
            platform: object,
            chat: str | None = None,
            *,
            max_wait: float = 1e9,
            scope: str | None = None,
        ) -> float:
            env.clock.advance(timedelta(seconds=3))
            env.engine._budget = Unlimited()
            await env.spaces.start(StartSpace(env.actor(), space.id))  # the row is claimed: not withdrawn
            return 3.0

    env.engine._budget = BudgetDuringWhichTheHostStarts()
    env.clock.set(space.starts_at - timedelta(minutes=30))
    await env.engine.deliver_due(max_batches=1)
    assert not env.platform.dms_to(env.host)
    t30 = await row(env, DeliveryKind.HOST_T30)
    assert t30.status is DeliveryStatus.SKIPPED and t30.last_error == "already live"


async def test_closed_dm_falls_back_to_a_batched_mention_and_is_remembered(core_env: CoreEnv) -> None:
    space = await _space(core_env)
    users = [UserRef(core_env.chat.platform, f"u{i}") for i in range(5)]
    group = ChatRef(core_env.chat.platform, "lobby")
    for u in users:
        await core_env.spaces.subscribe(Subscribe(u, space.id, via_chat=group))
    core_env.platform.closed_dms |= set(users[:3])
    await core_env.spaces.start(StartSpace(core_env.actor(), space.id))
    await core_env.run()
    assert len(core_env.platform.of("direct")) == 2
    # each of the three mentioned once, in the chat they subscribed from. (Found unreachable one by one,
    # their mentions may take more than one message; the group's own limit then batches the rest.)
    mentions = core_env.platform.of("mention")
    assert sorted(str(u) for m in mentions for u in m.users) == sorted(str(u) for u in users[:3])
    assert all(m.target == str(group) and "is live now" in m.notice.title for m in mentions)
    fallbacks = [d for d in await core_env.deliveries() if d.status is DeliveryStatus.FALLBACK]
    assert len(fallbacks) == 3 and all("unreachable" in (d.last_error or "") for d in fallbacks)
    # the next fan-out does not knock on the closed doors again
    profile = await core_env.profile(users[0])
    assert profile is not None and profile.dm_reachable is False


async def test_known_unreachable_users_are_not_dmed_again(core_env: CoreEnv) -> None:
    space = await _space(core_env)
    alice = UserRef(core_env.chat.platform, "alice")
    async with core_env.db.uow() as uow:
        await uow.users.set_reachable(alice, False)
        await uow.commit()
    await core_env.spaces.subscribe(Subscribe(alice, space.id))
    core_env.platform.closed_dms.clear()
    await core_env.spaces.start(StartSpace(core_env.actor(), space.id))
    await core_env.run()
    assert not core_env.platform.dms_to(alice)
    # subscribed privately (no via_chat): there is no group of theirs to mention them in — never the
    # Space's own chat, which may be someone's private chat, or a group they are not in
    assert not core_env.platform.of("mention")
    (notice,) = [d for d in await core_env.deliveries() if d.kind is DeliveryKind.LIVE_NOTICE]
    assert notice.status is DeliveryStatus.DEAD and "no group to mention them in" in (notice.last_error or "")
    assert (await core_env.spaces.reach(space.id)).unreachable == 1


async def test_rate_limit_is_honoured_without_costing_an_attempt(core_env: CoreEnv) -> None:
    space = await _space(core_env)
    core_env.platform.rate_limit_next = [7.0]
    core_env.clock.set(space.starts_at - timedelta(minutes=30))
    await core_env.run()
    r = await row(core_env, DeliveryKind.HOST_T30)
    assert r.status is DeliveryStatus.PENDING and r.attempts == 0
    assert r.due_at == core_env.clock.now() + timedelta(seconds=7)
    await core_env.advance(timedelta(seconds=7))
    assert (await row(core_env, DeliveryKind.HOST_T30)).status is DeliveryStatus.SENT


async def test_transient_errors_back_off_then_dead_letter_with_the_reason(core_env: CoreEnv) -> None:
    space = await _space(core_env)
    core_env.platform.fail_next = 1000
    core_env.clock.set(space.starts_at - timedelta(minutes=30))
    for _ in range(MAX_ATTEMPTS + 2):
        await core_env.run()
        r = await row(core_env, DeliveryKind.HOST_T30)
        if r.status is DeliveryStatus.PENDING:
            core_env.clock.set(r.due_at)  # the backoff, all within the 30 minutes before the start
    r = await row(core_env, DeliveryKind.HOST_T30)
    assert r.status is DeliveryStatus.DEAD and r.attempts == MAX_ATTEMPTS
    assert "HTTP 502" in (r.last_error or "")


async def test_recovers_after_a_transient_error(core_env: CoreEnv) -> None:
    space = await _space(core_env)
    core_env.platform.fail_next = 1
    core_env.clock.set(space.starts_at - timedelta(minutes=30))
    await core_env.run()
    r = await row(core_env, DeliveryKind.HOST_T30)
    assert r.status is DeliveryStatus.PENDING and r.due_at > core_env.clock.now()
    core_env.clock.set(r.due_at)
    await core_env.run()
    assert len(core_env.platform.dms_to(core_env.host)) == 1


async def test_expired_lease_is_reclaimed_and_the_old_owner_cannot_settle(core_env: CoreEnv) -> None:
    space = await _space(core_env)
    core_env.clock.set(space.starts_at - timedelta(minutes=30))
    outbox = core_env.db.outbox()
    (claimed,) = await outbox.claim_due(
        now=core_env.clock.now(), worker="dead-worker", lease=timedelta(minutes=2), batch=10
    )
    assert await core_env.run() == 0  # leased: nobody else touches it
    core_env.clock.advance(timedelta(minutes=3))
    assert await core_env.run() == 1  # the lease expired: w1 takes it over and sends
    assert claimed.id is not None
    lost = await outbox.settle(
        claimed.id, worker="dead-worker", status=DeliveryStatus.SENT, now=core_env.clock.now()
    )
    assert lost is False
    assert len(core_env.platform.dms_to(core_env.host)) == 1


async def test_nonce_is_short_and_stable() -> None:
    key = "space:abcdefghjk:r1:host_t30:console:user:" + "x" * 200
    assert len(nonce_for(key)) <= NONCE_LENGTH and nonce_for(key) == nonce_for(key)
    assert nonce_for(key) != nonce_for(key + "y")


async def test_deleted_card_is_dead_lettered_not_retried_forever(core_env: CoreEnv) -> None:
    space = await _space(core_env)
    core_env.platform.gone_chats.add(core_env.chat)
    await core_env.spaces.start(StartSpace(core_env.actor(), space.id))
    await core_env.run()
    edit = await row(core_env, DeliveryKind.CARD_EDIT)
    assert edit.status is DeliveryStatus.DEAD and "chat unavailable" in (edit.last_error or "")


async def test_a_row_whose_lease_ran_out_while_waiting_for_budget_is_given_back_unsent(
    core_env: CoreEnv,
) -> None:
    space = await _space(core_env)
    clock = core_env.clock

    class SlowBudget:
        async def acquire(
            self,
            platform: object,
            chat: str | None = None,
            *,
            max_wait: float = 1e9,
            scope: str | None = None,
        ) -> float:
            clock.advance(timedelta(minutes=5))  # longer than the 2-minute lease
            return 300.0

        async def penalise(
            self, platform: object, retry_after: float, *, chat: str | None = None, scope: str | None = None
        ) -> None:
            pass

    core_env.engine._budget = SlowBudget()
    clock.set(space.starts_at - timedelta(minutes=30))
    await core_env.engine.deliver_due(max_batches=1)
    assert not core_env.platform.dms_to(core_env.host)  # another worker may own it now: not sent
    r = await row(core_env, DeliveryKind.HOST_T30)
    assert r.status is DeliveryStatus.PENDING and r.attempts == 0 and "lease" in (r.last_error or "")


async def test_a_reminder_is_decided_on_the_space_as_it_is_after_the_budget_wait(core_env: CoreEnv) -> None:
    from core.commands import RescheduleSpace

    space = await _space(core_env)
    env = core_env

    class BudgetDuringWhichTheHostReschedules:
        async def acquire(
            self,
            platform: object,
            chat: str | None = None,
            *,
            max_wait: float = 1e9,
            scope: str | None = None,
        ) -> float:
            if chat == env.host.id:  # the host's T-30 DM waits; meanwhile the host moves the Space
                env.clock.advance(timedelta(seconds=5))
                env.engine._budget = Unlimited()
                await env.spaces.reschedule(RescheduleSpace(env.actor(), space.id, "2026-11-26 20:00"))
            return 5.0

        async def penalise(
            self, platform: object, retry_after: float, *, chat: str | None = None, scope: str | None = None
        ) -> None:
            pass

    env.engine._budget = BudgetDuringWhichTheHostReschedules()
    env.clock.set(space.starts_at - timedelta(minutes=30))
    await env.engine.deliver_due(max_batches=1)
    assert not env.platform.dms_to(env.host)  # not "starts in 30 minutes" for a Space moved to tomorrow
    old = [d for d in await env.deliveries() if d.kind is DeliveryKind.HOST_T30 and d.revision == 1]
    assert old[0].status is DeliveryStatus.SKIPPED and "revision" in (old[0].last_error or "")


async def test_a_card_posted_while_the_space_went_live_is_edited_to_live(core_env: CoreEnv) -> None:
    env = core_env
    space = await env.spaces.schedule(ScheduleSpace(env.actor(), env.chat, "Race", "2026-11-25 20:00"))
    real_post = env.platform.post

    async def post_while_host_starts(chat, notice, *, key):  # type: ignore[no-untyped-def]
        ref = await real_post(chat, notice, key=key)
        await env.spaces.start(StartSpace(env.actor(), space.id))  # before the card's handle is stored
        return ref

    env.platform.post = post_while_host_starts  # type: ignore[method-assign]
    await env.run()
    await env.run()
    (post,) = env.platform.of("post")
    assert post.notice.marker is None  # rendered while scheduled
    assert env.platform.of("edit")[-1].notice.marker == "🟣 LIVE"  # caught up


async def test_a_failed_outcome_write_is_kept_and_retried_not_resent(core_env: CoreEnv) -> None:
    env = core_env
    space = await _space(env)
    outbox = env.engine._outbox
    real = outbox.settle_many
    failures = [1]

    async def flaky(outcomes, *, worker, now):  # type: ignore[no-untyped-def]
        if failures:
            failures.pop()
            raise OSError("database connection lost")
        return await real(outcomes, worker=worker, now=now)

    outbox.settle_many = flaky  # type: ignore[method-assign]
    env.clock.set(space.starts_at - timedelta(minutes=30))
    await env.run()
    assert len(env.platform.dms_to(env.host)) == 1
    assert (await row(env, DeliveryKind.HOST_T30)).status is DeliveryStatus.SENT


async def test_poison_rows_are_dead_lettered_instead_of_blocking_the_queue(core_env: CoreEnv) -> None:
    from core.models import Delivery

    env = core_env
    space = await _space(env)
    async with env.db.uow() as uow:
        await uow.deliveries.add(
            [
                Delivery(
                    key="bad",
                    kind=DeliveryKind.LIVE_NOTICE,
                    platform=env.chat.platform,
                    recipient="not a ref",
                    space_id=space.id,
                    revision=1,
                    due_at=env.clock.now(),
                ),
            ]
        )
        await uow.commit()
    await env.run()
    bad = next(d for d in await env.deliveries() if d.key == "bad")
    assert bad.status is DeliveryStatus.DEAD and "malformed" in (bad.last_error or "")


async def test_a_chat_rate_limit_holds_back_that_chat_only(core_env: CoreEnv) -> None:
    env = core_env
    space = await _space(env)
    held: list[tuple[float, str | None]] = []

    class Recording(Unlimited):
        async def penalise(
            self, platform: object, retry_after: float, *, chat: str | None = None, scope: str | None = None
        ) -> None:
            held.append((retry_after, chat))

    env.engine._budget = Recording()
    env.platform.rate_limit_next = [9.0]
    await env.spaces.start(StartSpace(env.actor(), space.id))  # queues a card edit in the chat
    await env.run()
    assert held == [(9.0, env.chat.id)]


async def test_late_cancellation_notices_say_so(core_env: CoreEnv) -> None:
    from core.commands import CancelSpace

    env = core_env
    space = await _space(env)
    alice = UserRef(env.chat.platform, "alice")
    await env.spaces.subscribe(Subscribe(alice, space.id))
    await env.spaces.cancel(CancelSpace(env.actor(), space.id))
    env.clock.advance(timedelta(minutes=7))  # the service was down for a while
    env.engine.up_since = env.clock.now()
    await env.run()
    (note,) = env.platform.dms_to(alice)
    assert "was cancelled" in note.notice.title and any("delayed by 7 min" in x for x in note.notice.lines)


async def test_a_long_budget_wait_puts_the_row_back_instead_of_sleeping_in_the_batch(
    core_env: CoreEnv,
) -> None:
    from bots.runtime.budget import TokenBucketBudget
    from core.refs import Platform

    env = core_env
    space = await _space(env)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    budget = TokenBucketBudget(monotonic=lambda: 1000.0, sleep=sleep)
    await budget.penalise(Platform.CONSOLE, 180.0)  # a 429 said: nothing for three minutes
    env.engine._budget = budget
    env.clock.set(space.starts_at - timedelta(minutes=30))
    await env.engine.deliver_due(max_batches=1)
    t30 = await row(env, DeliveryKind.HOST_T30)
    assert slept == [] and not env.platform.dms_to(env.host)
    assert t30.status is DeliveryStatus.PENDING and t30.attempts == 0
    assert t30.due_at == env.clock.now() + timedelta(seconds=180) and "paced" in (t30.last_error or "")


async def test_each_outcome_is_durable_before_the_next_send_of_its_slot(core_env: CoreEnv) -> None:
    """Group commit: when a send starts, every send answered before it is recorded — a kill at that
    instant repeats only what is in flight."""
    env = core_env
    space = await _space(env)
    for i in range(5):
        await env.spaces.subscribe(Subscribe(UserRef(env.chat.platform, f"u{i}"), space.id))
    await env.spaces.start(StartSpace(env.actor(), space.id))
    answered: list[str] = []
    unrecorded_at_send: list[int] = []

    async def check(op: str, target: str) -> None:
        recorded = {
            d.recipient for d in await env.deliveries() if d.kind is DeliveryKind.LIVE_NOTICE and d.sent_at
        }
        unrecorded_at_send.append(len(set(answered) - recorded))
        if op == "direct":
            answered.append(target)  # answered right after this hook returns

    env.engine.config = EngineConfig(worker_id="w1", concurrency=1)
    env.platform.on_send = check
    await env.run()
    assert len(answered) == 5
    assert unrecorded_at_send == [0] * len(unrecorded_at_send)


async def test_outcomes_of_concurrent_sends_share_one_write(core_env: CoreEnv) -> None:
    env = core_env
    space = await _space(env)
    for i in range(20):
        await env.spaces.subscribe(Subscribe(UserRef(env.chat.platform, f"u{i}"), space.id))
    await env.spaces.start(StartSpace(env.actor(), space.id))
    env.engine.config = EngineConfig(worker_id="w1", concurrency=16, min_claim=30, batch=30)
    writes = env.engine.recorder.writes
    await env.run()
    assert len(env.platform.of("direct")) == 20
    # 21 outcomes (20 DMs and the card edit) answered together: far fewer transactions than rows
    assert env.engine.recorder.writes - writes < 10


async def test_outcomes_that_could_not_be_written_are_kept_and_written_first_next_time(
    core_env: CoreEnv,
) -> None:
    env = core_env
    space = await _space(env)
    outbox = env.engine._outbox
    real = outbox.settle_many
    down = [True]

    async def flaky(outcomes, *, worker, now):  # type: ignore[no-untyped-def]
        if down[0]:
            raise OSError("database unreachable")
        return await real(outcomes, worker=worker, now=now)

    outbox.settle_many = flaky  # type: ignore[method-assign]
    env.engine._flush_pause = 0.0
    env.clock.set(space.starts_at - timedelta(minutes=30))
    with pytest.raises(OSError):
        await env.run()
    down[0] = False
    await env.run()  # the database is back: the queued outcome is recorded, nothing is sent again
    assert len(env.platform.dms_to(env.host)) == 1
    assert (await row(env, DeliveryKind.HOST_T30)).status is DeliveryStatus.SENT


async def test_a_fallback_mention_keeps_the_delayed_mark(core_env: CoreEnv) -> None:
    env = core_env
    space = await _space(env)
    env.platform.closed_dms.add(env.host)
    env.clock.set(space.starts_at + timedelta(minutes=10))  # down across T-0
    env.engine.up_since = env.clock.now()
    await env.run()
    (mention,) = env.platform.of("mention")
    assert any("delayed by 10 min" in line for line in mention.notice.lines)


async def test_moving_twice_sends_one_moved_notice(core_env: CoreEnv) -> None:
    from core.commands import RescheduleSpace

    env = core_env
    space = await _space(env)
    alice = UserRef(env.chat.platform, "alice")
    await env.spaces.subscribe(Subscribe(alice, space.id))
    await env.spaces.reschedule(RescheduleSpace(env.actor(), space.id, "2026-11-26 20:00"))

    class BudgetDuringWhichTheHostMovesItAgain(Unlimited):
        async def acquire(
            self,
            platform: object,
            chat: str | None = None,
            *,
            max_wait: float = 1e9,
            scope: str | None = None,
        ) -> float:
            if chat == alice.id:  # the first "moved" DM is in flight (claimed): the host moves it again
                env.engine._budget = Unlimited()
                env.clock.advance(timedelta(seconds=2))
                await env.spaces.reschedule(RescheduleSpace(env.actor(), space.id, "2026-11-27 20:00"))
            return 0.0

    env.engine._budget = BudgetDuringWhichTheHostMovesItAgain()
    await env.run()
    await env.run()
    moved = [d for d in env.platform.dms_to(alice) if "moved to" in d.notice.title]
    assert len(moved) == 1 and "27 Nov" in moved[0].notice.title


async def test_an_outcome_never_lands_on_a_later_claim_of_the_same_worker_id(core_env: CoreEnv) -> None:
    from core.models import Outcome

    env = core_env
    space = await _space(env)
    env.clock.set(space.starts_at - timedelta(minutes=30))
    outbox = env.db.outbox()
    (first,) = await outbox.claim_due(
        now=env.clock.now(), worker="twin", lease=timedelta(minutes=2), batch=10
    )
    later = env.clock.now() + timedelta(minutes=3)  # the lease expired; a process with the same id re-claims
    (second,) = await outbox.claim_due(now=later, worker="twin", lease=timedelta(minutes=2), batch=10)
    assert first.id == second.id
    stale = Outcome(first.id or 0, DeliveryStatus.SENT, claim=first.claim)
    assert await outbox.settle_many([stale], worker="twin", now=later) == [False]
    fresh = Outcome(second.id or 0, DeliveryStatus.SENT, claim=second.claim)
    assert await outbox.settle_many([fresh], worker="twin", now=later) == [True]


# --------------------------------------------------------------------------- the "delayed" mark


async def _live_with_fans(env: CoreEnv, n: int, **start: object):  # type: ignore[no-untyped-def]
    space = await _space(env)
    fans = [UserRef(env.chat.platform, f"fan{i}") for i in range(n)]
    for u in fans:
        await env.spaces.subscribe(Subscribe(u, space.id))
    await env.spaces.start(StartSpace(env.actor(), space.id))
    return space, fans


async def test_a_notice_merely_queued_behind_the_limits_is_not_marked_delayed(core_env: CoreEnv) -> None:
    env = core_env
    env.engine.up_since = env.clock.now()  # the service runs, and kept running
    _, (fan,) = await _live_with_fans(env, 1)
    env.clock.advance(timedelta(minutes=5))  # a long queue: five minutes before its turn came
    await env.run()
    (dm,) = env.platform.dms_to(fan)
    assert not any("delayed" in line for line in dm.notice.lines)
    (r,) = [d for d in await env.deliveries() if d.kind is DeliveryKind.LIVE_NOTICE]
    assert r.status is DeliveryStatus.SENT and r.late_by == 300  # the real lateness is kept (metrics)


async def test_a_notice_due_while_the_service_was_down_is_marked(core_env: CoreEnv) -> None:
    env = core_env
    _, (fan,) = await _live_with_fans(env, 1)
    env.clock.advance(timedelta(minutes=5))
    env.engine.up_since = env.clock.now()  # every worker was down; the first came back just now
    await env.run()
    (dm,) = env.platform.dms_to(fan)
    assert any("delayed by 5 min" in line for line in dm.notice.lines)


async def test_a_notice_late_after_a_failed_attempt_is_marked(core_env: CoreEnv) -> None:
    from core.errors import TransientError

    env = core_env
    env.engine.up_since = env.clock.now()
    _, (fan,) = await _live_with_fans(env, 1)
    failures = [1]

    async def platform_down_once(op: str, target: str) -> None:
        if op == "direct" and failures:
            failures.pop()
            raise TransientError("HTTP 502")

    env.platform.on_send = platform_down_once
    await env.run()
    assert not env.platform.dms_to(fan)
    env.clock.advance(timedelta(minutes=2))  # the platform stayed down; the retry comes much later
    await env.run()
    (dm,) = env.platform.dms_to(fan)
    assert any("delayed by 2 min" in line for line in dm.notice.lines)


# --------------------------------------------------------------------------- priorities and claims


async def test_a_host_reminder_goes_ahead_of_a_fan_out_due_earlier(core_env: CoreEnv) -> None:
    env = core_env
    await _live_with_fans(env, 30)
    other = await env.spaces.schedule(ScheduleSpace(env.actor(), env.chat, "Next one", "2026-11-25 17:01"))
    env.clock.set(other.starts_at)  # its T-0 comes due while 30 live notices wait
    await env.run()
    dms = env.platform.of("direct")
    assert len(dms) == 31
    assert dms[0].target == str(env.host) and "Next one" in dms[0].notice.title


async def test_known_unreachable_subscribers_are_mentioned_with_the_first_dms(core_env: CoreEnv) -> None:
    env = core_env
    space = await _space(env)
    fans = [UserRef(env.chat.platform, f"fan{i}") for i in range(30)]
    async with env.db.uow() as uow:
        for u in fans[:3]:
            await uow.users.set_reachable(u, False)  # a DM to them failed in an earlier fan-out
        await uow.users.set_reachable(fans[3], False)
        await uow.commit()
    for u in fans:
        # fan3 subscribed privately (a deep link): there is no group to mention them in
        await env.spaces.subscribe(Subscribe(u, space.id, via_chat=None if u == fans[3] else env.chat))
    await env.spaces.start(StartSpace(env.actor(), space.id))
    env.engine.config = EngineConfig(worker_id="w1", concurrency=1)
    await env.run()
    ops = [s.op for s in env.platform.sent]
    (mention,) = env.platform.of("mention")  # all three in one message, at fan-out time
    assert set(mention.users) == set(fans[:3])
    assert mention.target == str(env.chat)  # the group they subscribed from
    assert ops.index("mention") < ops.index("direct")  # before the first DM, not after the last
    assert not any(env.platform.dms_to(u) for u in fans[:4])  # no closed door knocked on
    assert len(env.platform.of("direct")) == 26
    (private,) = [d for d in await env.deliveries() if d.recipient == str(fans[3])]
    assert private.status is DeliveryStatus.DEAD and private.last_error == NO_GROUP_TO_MENTION


async def test_claims_are_small_so_idle_workers_share_a_small_fan_out(core_env: CoreEnv) -> None:
    """57 DMs, two idle workers on a paced platform (one send per 1/7.5 s): both send, instead of the first
    claimer taking everything while the other idles."""
    env = core_env
    _, fans = await _live_with_fans(env, 57)
    elapsed = [0.0]  # the platform's pace, as both workers' monotonic clock

    def engine(worker: str) -> DeliveryEngine:
        return DeliveryEngine(
            env.db.outbox(),
            env.db.uow,
            env.platform,
            env.clock,
            Unlimited(),
            StaticLinks(),
            env.wake,
            EngineConfig(worker_id=worker),
            monotonic=lambda: elapsed[0],
        )

    one_at_a_time = asyncio.Lock()

    async def paced(op: str, target: str) -> None:
        async with one_at_a_time:  # the platform's limit: 7.5 sends a second, shared
            elapsed[0] += 1 / 7.5
            await asyncio.sleep(0)  # a real platform answers later: the other worker runs meanwhile

    env.platform.on_send = paced
    await asyncio.gather(engine("w1").deliver_due(), engine("w2").deliver_due())
    received = env.platform.received()
    assert sorted(received) == sorted(str(u) for u in fans) and set(received.values()) == {1}
    handled = [d.claimed_by for d in await env.deliveries() if d.kind is DeliveryKind.LIVE_NOTICE]
    assert handled.count("w1") + handled.count("w2") == 57
    if env.backend != "sqlite":  # SQLite's one write lock is not fair between two writers: no promise there
        assert min(handled.count("w1"), handled.count("w2")) >= 16  # neither swallowed the fan-out


def test_a_claim_holds_about_a_second_of_this_workers_pace() -> None:
    t = [0.0]
    engine = DeliveryEngine(
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        Unlimited(),
        StaticLinks(),
        None,  # type: ignore[arg-type]
        EngineConfig(worker_id="w", min_claim=8, batch=200, claim_horizon=1.0),
        monotonic=lambda: t[0],
    )
    engine._pace.begin()
    assert engine.claim_size() == 8  # pace unknown: start small
    engine._pace.finished(8)  # the first claim went out at once (the budget's burst): not yet a pace
    assert engine.claim_size() == 8
    for _ in range(30):  # 7.5 rows a second (Telegram's 30/s shared by four workers)
        t[0] += 1 / 7.5
        engine._pace.finished()
    assert engine.claim_size() == 8
    for _ in range(120):  # 30 rows a second (the whole of Telegram's rate), for 4 s
        t[0] += 1 / 30
        engine._pace.finished()
    assert 29 <= engine.claim_size() <= 31
    for _ in range(3000):  # an unlimited platform: 1,000 rows a second
        t[0] += 0.001
        engine._pace.finished()
    assert engine.claim_size() == 200
    t[0] += 10  # idle for a while: back to small claims
    engine._pace.begin()
    assert engine.claim_size() == 8
    # a burst of answers at once (sends paced, outcomes recorded together) is not a fast pace
    t[0] += 1.0
    engine._pace.finished(8)
    assert engine.claim_size() == 8


# --------------------------------------------------------------------------- leases


async def test_renewed_leases_keep_the_rows_and_a_taken_over_row_is_not_sent(core_env: CoreEnv) -> None:
    env = core_env
    _, fans = await _live_with_fans(env, 3)
    env.engine.config = EngineConfig(worker_id="w1", concurrency=1)
    lease = env.engine.config.lease
    outbox = env.db.outbox()
    seen: list[str] = []
    taken: list[str] = []

    async def stall_then_lose(op: str, target: str) -> None:
        seen.append(target)
        if op != "direct" or len([t for t in seen if t.startswith("console:user:fan")]) != 1:
            return
        # a live worker renews: past the first lease's end, nobody can take its rows
        env.clock.advance(lease / 2)
        assert await env.engine.renew_leases() >= 2
        env.clock.advance(lease * 3 / 4)
        assert await outbox.claim_due(now=env.clock.now(), worker="w2", lease=lease, batch=10) == []
        # then it stalls (no renewal) past the renewed lease: w2 takes the other rows over
        env.clock.advance(lease)
        grabbed = await outbox.claim_due(now=env.clock.now(), worker="w2", lease=lease * 10, batch=10)
        taken.extend(d.recipient for d in grabbed)
        await env.engine.renew_leases()  # back to life: the renewal learns the rows are gone

    env.platform.on_send = stall_then_lose
    await env.run()
    sent_by_w1 = [s.target for s in env.platform.of("direct")]
    assert len(sent_by_w1) == 1  # the one in flight during the stall; the others are w2's now
    assert set(taken) >= {str(u) for u in fans} - set(sent_by_w1)
    rows = {d.recipient: d for d in await env.deliveries() if d.kind is DeliveryKind.LIVE_NOTICE}
    for recipient in set(taken) - set(sent_by_w1):
        assert rows[recipient].claimed_by == "w2" and rows[recipient].status is DeliveryStatus.CLAIMED


async def test_a_dead_workers_rows_wake_the_others_at_the_end_of_its_lease(core_env: CoreEnv) -> None:
    env = core_env
    _, fans = await _live_with_fans(env, 2)
    lease = env.engine.config.lease
    claimed = await env.db.outbox().claim_due(now=env.clock.now(), worker="dead", lease=lease, batch=10)
    assert claimed  # ... and the worker was killed
    env.wake.armed.clear()
    assert await env.run() == 0
    assert env.wake.earliest == env.clock.now() + lease  # nothing due now: woken when the lease runs out
    env.clock.set(env.wake.earliest)
    await env.run()
    assert sorted(env.platform.received()) == sorted(str(u) for u in fans)


async def test_a_platform_call_that_hangs_is_cut_at_the_send_timeout_and_retried(core_env: CoreEnv) -> None:
    env = core_env
    space = await _space(env)
    never = asyncio.Event()

    async def hang(op: str, target: str) -> None:
        if op == "direct":
            await never.wait()

    env.platform.on_send = hang
    env.engine.config = EngineConfig(worker_id="w1", send_timeout=0.05)
    env.clock.set(space.starts_at - timedelta(minutes=30))
    await env.run()
    t30 = await row(env, DeliveryKind.HOST_T30)
    assert t30.status is DeliveryStatus.PENDING and "SendTimedOut" in (t30.last_error or "")
    assert t30.due_at > env.clock.now()  # backoff, like any transient error
    assert env.engine.sends_in_flight == 0


async def test_a_restarted_worker_takes_back_at_once_what_it_held_when_it_died(core_env: CoreEnv) -> None:
    env = core_env
    _, fans = await _live_with_fans(env, 3)
    held = await env.db.outbox().claim_due(
        now=env.clock.now(), worker="w1", lease=timedelta(hours=1), batch=10
    )
    assert held  # the process named w1 died holding these; a new one starts under the same name
    assert await env.engine.recover() == len(held)
    await env.run()  # no waiting for the hour-long lease
    assert sorted(env.platform.received()) == sorted(str(u) for u in fans)


async def test_a_row_whose_handling_crashes_is_not_renewed_and_ends_dead_lettered(
    core_env: CoreEnv, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug must not pin a row: renewals stop for it, its lease runs out, it is retried, and after a few
    crashes _drop_poison dead-letters it (no worker holds it forever, nothing else waits behind it)."""
    from core.models import Delivery

    env = core_env
    space = await _space(env)
    async with env.db.uow() as uow:
        await uow.deliveries.add(
            [
                Delivery(  # a mention "about" a card: no notice renders that — the handler raises
                    key="odd",
                    kind=DeliveryKind.MENTION,
                    platform=env.chat.platform,
                    recipient=str(env.chat),
                    subject=str(env.host),
                    about=DeliveryKind.CARD_POST,
                    space_id=space.id,
                    revision=1,
                    due_at=env.clock.now(),
                )
            ]
        )
        await uow.commit()
    lease = env.engine.config.lease
    for _ in range(MAX_ATTEMPTS + 3):
        await env.run()
        assert await env.engine.renew_leases() == 0  # nothing held: the crashed row is not kept alive
        env.clock.advance(lease)
    odd = next(d for d in await env.deliveries() if d.key == "odd")
    assert odd.status is DeliveryStatus.DEAD and "gave up" in (odd.last_error or "")
    assert "delivery crashed" in caplog.text


async def test_a_card_in_a_guild_channel_shows_the_time_in_the_guilds_zone(core_env: CoreEnv) -> None:
    # the guild chose New York once for every channel; the host's own zone (Tokyo) read their words, but a
    # card speaks to the channel
    from core.models import Community, UserProfile

    env = core_env
    chat = ChatRef(env.chat.platform, "room", scope="guild-1")
    async with env.db.uow() as uow:
        await uow.communities.upsert(Community(chat.community, tz="America/New_York"))
        await uow.users.upsert(UserProfile(env.host, tz="Asia/Tokyo"))
        await uow.commit()
    space = await env.spaces.schedule(ScheduleSpace(env.actor(), chat, "Zones", "2026-11-27 10:00"))
    assert space.tz == "Asia/Tokyo"
    await env.run()
    (post,) = env.platform.of("post")
    assert post.notice.when_text is not None and "20:00" in post.notice.when_text  # 10:00 JST = 20:00 EST
