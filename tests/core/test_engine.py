"""The delivery engine: late and stale policy, retries, fallbacks, dead letters, leases — on every backend."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bots.runtime.budget import Unlimited
from core.commands import ScheduleSpace, StartSpace, Subscribe
from core.models import DeliveryKind, DeliveryStatus
from core.refs import ChatRef, UserRef
from core.rules import MAX_ATTEMPTS
from core.services.deliveries import NONCE_LENGTH, EngineConfig, nonce_for
from tests.conftest import CoreEnv


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
    await core_env.run()
    (dm,) = core_env.platform.dms_to(core_env.host)
    assert any("delayed by 12 min" in line for line in dm.notice.lines)
    r = await row(core_env, DeliveryKind.HOST_T30)
    assert r.status is DeliveryStatus.SENT and r.late_by == 12 * 60


async def test_stale_t30_after_start_time_is_skipped_with_a_reason(core_env: CoreEnv) -> None:
    space = await _space(core_env)
    core_env.clock.set(space.starts_at + timedelta(minutes=3))  # down across both reminders
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
        async def acquire(self, platform: object, chat: str | None = None, *, max_wait: float = 1e9) -> float:
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
    (mention,) = core_env.platform.of("mention")  # three people, one message
    assert mention.target == str(group) and set(mention.users) == set(users[:3])
    assert "is live now" in mention.notice.title
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
    (mention,) = core_env.platform.of("mention")
    assert mention.target == str(core_env.chat)  # the Space's own chat when no via_chat


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
        async def acquire(self, platform: object, chat: str | None = None, *, max_wait: float = 1e9) -> float:
            clock.advance(timedelta(minutes=5))  # longer than the 2-minute lease
            return 300.0

        async def penalise(self, platform: object, retry_after: float, *, chat: str | None = None) -> None:
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
        async def acquire(self, platform: object, chat: str | None = None, *, max_wait: float = 1e9) -> float:
            if chat == env.host.id:  # the host's T-30 DM waits; meanwhile the host moves the Space
                env.clock.advance(timedelta(seconds=5))
                env.engine._budget = Unlimited()
                await env.spaces.reschedule(RescheduleSpace(env.actor(), space.id, "2026-11-26 20:00"))
            return 5.0

        async def penalise(self, platform: object, retry_after: float, *, chat: str | None = None) -> None:
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
        async def penalise(self, platform: object, retry_after: float, *, chat: str | None = None) -> None:
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
    await env.advance(timedelta(minutes=7))  # the service was down for a while
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


async def test_outcomes_are_recorded_within_seconds_not_only_at_the_end_of_the_batch(
    core_env: CoreEnv,
) -> None:
    env = core_env
    space = await _space(env)
    for i in range(3):
        await env.spaces.subscribe(Subscribe(UserRef(env.chat.platform, f"u{i}"), space.id))
    await env.spaces.start(StartSpace(env.actor(), space.id))
    seen: list[dict[str, int]] = []
    outbox = env.engine._outbox

    class SlowPlatformDays(Unlimited):
        async def acquire(self, platform: object, chat: str | None = None, *, max_wait: float = 1e9) -> float:
            seen.append({k: v for k, v in (await outbox.counts()).items() if v})
            env.clock.advance(timedelta(seconds=6))  # each send takes a while (on the core clock)
            return 0.0

    env.engine.config = EngineConfig(worker_id="w1", concurrency=1)
    env.engine._budget = SlowPlatformDays()
    await env.engine.deliver_due(max_batches=1)
    # by the third send, the first ones were already recorded as sent — not held until the batch ended
    assert seen[-1].get("sent", 0) >= 1


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
        async def acquire(self, platform: object, chat: str | None = None, *, max_wait: float = 1e9) -> float:
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
    stale = Outcome(first.id or 0, DeliveryStatus.SENT, lease_until=first.lease_until)
    assert await outbox.settle_many([stale], worker="twin", now=later) == [False]
    fresh = Outcome(second.id or 0, DeliveryStatus.SENT, lease_until=second.lease_until)
    assert await outbox.settle_many([fresh], worker="twin", now=later) == [True]
