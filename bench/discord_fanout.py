"""Discord fan-out in real time: live notices DMed to the subscribers of one Discord Space by 4 real
`spaces worker` processes on PostgreSQL (the CLI as deployed, the real discord.py), against the Discord
emulator (tests/fakes/discord.py) through DISCORD_API_BASE — the harness of tests/delivery/test_discord_chaos.py
(tests/delivery/harness.py), without its chaos. Everything is counted at the emulator, per recipient.

1. new DMs: 2,000 members who have no DM channel with the bot yet. Each DM costs two requests — open the DM
   channel, then the message — under Discord's global 50 requests/s: the floor is 4,000 / 50 = 80 s.
2. cached DMs: a later Space's live notice to the same audience. The DM channels opened in run 1 were kept
   (in the users' profiles, shared by every worker): one request per DM, floor 2,000 / 50 = 40 s.

The emulator keeps Discord's published limits (50 requests/s global, 5 messages / 5 s per channel), except
the DM-open route: Discord publishes no limit for it, the emulator's cautious guess (10 per 10 s) would make
this a benchmark of that guess, so here it is set far above the global rate (it never binds: every open
still counts against the global 50/s).

    python -m bench --only discord [--quick]
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from bots.runtime.clock import SystemClock
from core.commands import ScheduleSpace, StartSpace, Subscribe
from core.refs import ChatRef, Platform, UserRef
from core.rules import Actor
from core.services.spaces import SpaceService
from storage.db import make_engine, make_session_factory, normalize_url
from storage.migrate import upgrade
from storage.notify import PgWakeChannel
from storage.stores import unit_of_work_factory
from tests.delivery.fleet import steady_emulator
from tests.delivery.harness import LIVE_TEXT, Fleet, _settled, _wait, start_workers
from tests.fakes.discord import DcMember, DiscordEmulator, RateRule

DISCORD_RATE = 50.0  # requests/s, Discord's global limit per bot token: the floor of a Discord fan-out
DM_OPEN_RATE = RateRule(10_000, 1.0)  # unpublished by Discord: set out of the way (see the docstring)
WORKERS = 4
MESSAGES = "/channels/{channel_id}/messages"
DM_OPEN = "/users/@me/channels"


@dataclass
class Run:
    label: str
    subscribers: int
    requests_per_dm: int
    seconds: float  # start → the last DM accepted by the emulator
    received: Counter[int]  # user id → copies of this Space's live notice in their DM
    count_429: int
    by_route_429: Counter[str]  # "global" or "<METHOD> <route template>"
    dm_opens: int
    attempts: int  # REST requests tried during the run (429s included)
    busiest_second: int  # the most requests tried in any 1 s of the run

    @property
    def floor(self) -> float:
        return self.subscribers * self.requests_per_dm / DISCORD_RATE

    @property
    def lost(self) -> int:
        return self.subscribers - sum(1 for n in self.received.values() if n > 0)

    @property
    def duplicates(self) -> int:
        return sum(1 for n in self.received.values() if n > 1)

    def line(self) -> str:
        ok = self.lost == 0 and self.duplicates == 0
        routes = ", ".join(f"{r} {n}" for r, n in sorted(self.by_route_429.items())) or "none"
        return (
            f"[postgres] discord fan-out, {self.label}, {self.subscribers:,} subscribers, {WORKERS} workers: "
            f"{self.seconds:6.1f} s (floor {self.floor:.1f} s = {self.subscribers * self.requests_per_dm:,} "
            f"requests at {DISCORD_RATE:.0f}/s: ratio {self.seconds / self.floor:.3f}); "
            f"lost {self.lost}, duplicates {self.duplicates} {'OK' if ok else 'WRONG'}; "
            f"{self.count_429} × 429 ({routes}); {self.dm_opens:,} DM channels opened; "
            f"{self.attempts:,} requests tried, busiest second {self.busiest_second}"
        )


def _busiest(times: list[float], window: float = 1.0) -> int:
    times = sorted(times)
    best = lo = 0
    for hi, t in enumerate(times):
        while times[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def _copies(dc: DiscordEmulator, fans: list[DcMember], title: str) -> Counter[int]:
    """User id → copies of ``title``'s live notice in their DM (0 for none), in one pass over what the
    emulator holds."""
    owner = {ch.id: uid for uid, ch in dc.dm_channels.items()}
    out: Counter[int] = Counter({f.user.id: 0 for f in fans})
    for m in dc.messages.values():
        uid = owner.get(m.channel_id, 0)
        if uid in out and not m.deleted and LIVE_TEXT in m.text and title in m.text:
            out[uid] += 1
    return out


def _measure(
    dc: DiscordEmulator, fans: list[DcMember], title: str, label: str, t0: float, per_dm: int
) -> Run:
    """What the emulator received since ``t0`` (its clock is time.monotonic), per recipient."""
    received = _copies(dc, fans, title)
    dm_ids = {str(ch.id) for ch in dc.dm_channels.values()}
    calls = [c for c in dc.api_calls if c.time >= t0]
    dms = [c.time for c in calls if c.ok and c.route == MESSAGES and c.params.get("channel_id") in dm_ids]
    limited = [c for c in calls if c.status == 429]
    return Run(
        label=label,
        subscribers=len(fans),
        requests_per_dm=per_dm,
        seconds=(max(dms) - t0) if dms else float("nan"),
        received=received,
        count_429=len(limited),
        by_route_429=Counter(
            "global" if c.headers.get("X-RateLimit-Global") else f"{c.method} {c.route}" for c in limited
        ),
        dm_opens=sum(1 for c in calls if c.ok and c.route == DM_OPEN),
        attempts=len(calls),
        busiest_second=_busiest([c.time for c in calls]),
    )


def _settled_due(url: str, space_id: str) -> Callable[[], Awaitable[bool]]:
    return lambda: _settled(url, [space_id], due_only=True)


async def fan_outs(url: str, log_dir: Path, subscribers: int) -> list[Run]:
    await upgrade(url)
    db = make_engine(normalize_url(url))
    channel = PgWakeChannel(db)

    spaces = SpaceService(
        unit_of_work_factory(make_session_factory(db)), SystemClock(), channel, default_tz="UTC"
    )
    fleet: Fleet | None = None
    steady = contextlib.ExitStack()
    runs: list[Run] = []
    try:
        async with DiscordEmulator(dm_open_rate=DM_OPEN_RATE) as dc:
            guild = dc.create_guild("Fans")
            (text,) = guild.channels.values()
            chat = ChatRef(Platform.DISCORD, str(text.id), scope=str(guild.id))
            host = UserRef(Platform.DISCORD, str(guild.owner_id))
            fans = dc.add_members(guild, subscribers, prefix="fan")
            # both Spaces and their audiences up front: their cards and events are posted before the runs
            first = await spaces.schedule(ScheduleSpace(Actor(host), chat, "Launch", "in 2 hours"))
            later = await spaces.schedule(ScheduleSpace(Actor(host), chat, "Encore", "in 3 hours"))
            for space in (first, later):
                for fan in fans:
                    user = UserRef(Platform.DISCORD, str(fan.user.id))
                    await spaces.subscribe(Subscribe(user, space.id, via_chat=chat))
            fleet = await start_workers(
                {"DISCORD_BOT_TOKEN": dc.token, "DISCORD_API_BASE": dc.base_url}, url, log_dir, WORKERS, 120
            )
            ids = [first.id, later.id]
            await _wait(lambda: _settled(url, ids, due_only=True), 120, "the cards were not posted")
            assert not dc.dm_channels, "a subscriber already had a DM channel"
            steady.enter_context(steady_emulator())  # its arrival stamps must not bunch up behind our pauses
            for space, label, per_dm in ((first, "new DMs", 2), (later, "cached DM channels", 1)):
                t0 = time.monotonic()
                await spaces.start(StartSpace(Actor(host), space.id))
                # every subscriber has a copy (checked twice a second: the check walks every message, and
                # shares this process with the emulator); then nothing of the Space is due or in flight
                deadline = time.monotonic() + 600
                while not all(_copies(dc, fans, space.title).values()):
                    if time.monotonic() > deadline:
                        raise AssertionError("not every subscriber received the live notice within 600 s")
                    await asyncio.sleep(0.5)
                await _wait(_settled_due(url, space.id), 60, "the outbox did not settle")
                runs.append(_measure(dc, fans, space.title, label, t0, per_dm))
            steady.close()
            await fleet.stop()
            fleet = None
            if dc.pings:
                print(f"!! {sum(dc.pings.values())} subscribers were mentioned instead of DMed")
            return runs
    finally:
        steady.close()
        if fleet is not None:
            await fleet.stop()
        await channel.close()
        await db.dispose()


async def run(quick: bool) -> None:
    from bench.__main__ import database

    n = 500 if quick else 2_000
    print(
        f"[postgres] discord: emulator at Discord's published limits ({DISCORD_RATE:.0f} requests/s global, "
        f"5 messages / 5 s per channel); DM opens {DM_OPEN_RATE.limit:,} per {DM_OPEN_RATE.per:g} s "
        f"(unpublished by Discord: set out of the way, every open still counts against the global limit)"
    )
    with tempfile.TemporaryDirectory() as logs:
        async with database("postgres") as url:
            for r in await fan_outs(url, Path(logs), n):
                print(r.line())
