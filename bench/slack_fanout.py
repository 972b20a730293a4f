"""Slack fan-out in real time: live notices DMed by the delivery engine (in this process, on the real clock)
through the real SlackPlatform (slack_sdk, OAuth installations in the database) to the Slack emulator
(tests/fakes/slack.py: 1 message per second per channel, a workspace cap), counted at the emulator per
recipient.

Slack's limits are per app per workspace, and so is the send budget (Budget ``scope``); the engine leaves a
workspace whose hand is full out of its claims (core.services.deliveries, lanes), so two workspaces' fan-outs
go side by side:

1. one workspace, N subscribers: floor N / 10 per second (the budget's pace for one workspace);
2. two workspaces, N/2 subscribers each, started at the same instant: floor (N/2) / 10 — each workspace's own
   pace; one budget shared by both (or one queue) would need twice that.

    python -m bench --only slack [--quick]
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bots.router import Router
from bots.runtime.budget import DEFAULT_GLOBAL, TokenBucketBudget
from bots.runtime.clock import SystemClock
from bots.slack.adapter import SlackPlatform
from core.commands import ScheduleSpace, StartSpace
from core.models import Subscription
from core.refs import ChatRef, Platform, UserRef
from core.rules import Actor
from core.services.deliveries import DeliveryEngine, EngineConfig
from core.services.spaces import SpaceService
from storage.db import make_engine, make_session_factory
from storage.migrate import upgrade
from storage.stores import SqlOutbox, unit_of_work_factory
from tests.bots.slack.conftest import installed, oauth_workspaces
from tests.bots.telegram.conftest import Links
from tests.fakes.clock import RecordingWake
from tests.fakes.slack import SlackEmulator, SlTeam

RATE = DEFAULT_GLOBAL[Platform.SLACK].per_second  # one workspace's pace: the floor of its fan-out


@dataclass
class Result:
    seconds: dict[str, float]  # team → start → its last DM received
    received: dict[str, int]  # team → fans who got exactly one live notice
    fans: dict[str, int]
    duplicates: int
    count_429: int


async def _fan_out(sizes: list[int]) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        await upgrade(url)
        db = make_engine(url)
        uow = unit_of_work_factory(make_session_factory(db))
        clock, wake = SystemClock(), RecordingWake()
        spaces = SpaceService(uow, clock, wake, default_tz="UTC")
        async with SlackEmulator() as emu:
            workspaces = oauth_workspaces(emu, db, clock)
            platform = SlackPlatform(workspaces, links=Links())
            router = Router([platform])
            spaces.mirror_native_events(router.native_event_platforms())
            outbox = SqlOutbox(db)
            engine = DeliveryEngine(
                outbox, uow, router, clock, TokenBucketBudget(), Links(), wake,
                EngineConfig(worker_id="bench"), rng=random.Random(1),
            )  # fmt: skip
            await platform.start()
            try:
                teams: list[SlTeam] = []
                ids: list[str] = []
                for i, size in enumerate(sizes):
                    team = emu.create_workspace(f"Team{i}")
                    await installed(workspaces, emu, team)
                    host = emu.add_user(team, "host")
                    chan = emu.add_channel(team, "general", [host])
                    chat = ChatRef(Platform.SLACK, chan.id, scope=team.id)
                    space = await spaces.schedule(
                        ScheduleSpace(Actor(UserRef(Platform.SLACK, host.id, scope=team.id)), chat, "AMA",
                                      "in 2 hours")
                    )  # fmt: skip
                    async with uow() as u:
                        for fan in emu.add_users(team, size, prefix="fan"):
                            fan_ref = UserRef(Platform.SLACK, fan.id, scope=team.id)
                            await u.subscriptions.add(
                                Subscription(space.id, fan_ref, clock.now(), via_chat=chat)
                            )
                        await u.commit()
                    teams.append(team)
                    ids.append(space.id)
                await engine.deliver_due()  # the cards
                for team, space_id in zip(teams, ids, strict=True):
                    host = next(u for u in emu.users.values() if u.team_id == team.id and u.name == "host")
                    await spaces.start(
                        StartSpace(Actor(UserRef(Platform.SLACK, host.id, scope=team.id)), space_id)
                    )
                t0 = emu.clock()
                started = time.monotonic()
                while True:
                    await engine.deliver_due()
                    nxt = await outbox.next_due()
                    counts = await outbox.counts()
                    if nxt is None and not counts.get("claimed"):
                        break
                    if time.monotonic() - started > 30 + 3 * sum(sizes) / RATE:
                        raise RuntimeError(f"the fan-out did not settle: {counts}")
                    wait = (nxt - clock.now()).total_seconds() if nxt is not None else 0.05
                    await asyncio.sleep(min(max(wait, 0.01), 1.0))
                received = emu.received()
                posts = [c for c in emu.api_calls("chat.postMessage") if c.time >= t0]
                seconds, ok, fans = {}, {}, {}
                for team in teams:
                    mine = [
                        u for u in emu.users.values() if u.team_id == team.id and u.name.startswith("fan")
                    ]
                    fans[team.id] = len(mine)
                    ok[team.id] = sum(1 for u in mine if received[u.id] == 1)
                    times = [c.time for c in posts if c.team_id == team.id and c.ok]
                    seconds[team.id] = max(times) - t0
                dups = sum(max(0, n - 1) for n in received.values())
                return Result(seconds, ok, fans, dups, sum(1 for c in posts if c.status == 429))
            finally:
                await platform.stop()
                await db.dispose()


def _report(label: str, r: Result, floor: float) -> None:
    worst = max(r.seconds.values())
    lost = sum(r.fans.values()) - sum(r.received.values()) - r.duplicates
    print(
        f"[slack   ] {label}: {worst:.1f} s (ratio {worst / floor:.3f} to the {floor:.0f} s floor; per "
        f"workspace {', '.join(f'{s:.1f} s' for s in r.seconds.values())}), {r.count_429} × 429, "
        f"{max(lost, 0)} lost, {r.duplicates} duplicates"
    )


async def run(quick: bool) -> None:
    n = 200 if quick else 600
    one = await _fan_out([n])
    _report(f"live notice to {n} subscribers in one workspace", one, n / RATE)
    two = await _fan_out([n // 2, n // 2])
    _report(
        f"live notices to {n // 2} + {n // 2} subscribers in two workspaces at once (one shared budget: "
        f"{n / RATE:.0f} s)",
        two,
        n / 2 / RATE,
    )
