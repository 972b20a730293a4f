"""The Discord adapter's pure parts: nonces, event status paths, and the gateway's scheduled-event
dispatches turned into the core's calls (fed as the raw frames discord.py hands to on_socket_raw_receive)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import discord

from bots.discord.adapter import (
    ACTIVE,
    CANCELED,
    COMPLETED,
    SCHEDULED,
    DiscordConfig,
    DiscordPlatform,
    _mapped,
    _path,
    core_status,
    intents,
    nonce,
    status_code,
)
from core.errors import ChatUnavailable, RateLimited, RecipientUnreachable
from core.refs import Platform, UserRef


@dataclass
class Sink:
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    async def status_changed(
        self, platform: Platform, scope: str, event_id: str, status: Any, actor: UserRef | None
    ) -> None:
        self.calls.append(("status", platform, scope, event_id, str(getattr(status, "name", status)), actor))

    async def interest(
        self, platform: Platform, scope: str, event_id: str, user: UserRef, interested: bool
    ) -> None:
        self.calls.append(("interest", platform, scope, event_id, user, interested))


def test_nonce_is_at_most_25_characters_and_stable() -> None:
    assert nonce("abc") == "abc"
    long = "space:abcdefghjk:live:discord:user:123456789012345678"
    assert len(nonce(long)) == 25 and nonce(long) == nonce(long) != nonce(long + "x")


def test_status_paths_follow_discords_allowed_transitions() -> None:
    assert _path(SCHEDULED, ACTIVE) == (ACTIVE,)
    assert _path(SCHEDULED, COMPLETED) == (ACTIVE, COMPLETED)
    assert _path(SCHEDULED, CANCELED) == (CANCELED,)
    assert _path(ACTIVE, COMPLETED) == (COMPLETED,)
    assert _path(ACTIVE, CANCELED) == (COMPLETED,)  # a live Space cancelled has ended
    assert _path(ACTIVE, ACTIVE) == ()  # a retried update
    assert _path(COMPLETED, ACTIVE) == () and _path(CANCELED, SCHEDULED) == ()


def test_status_names_round_trip() -> None:
    for code in (SCHEDULED, ACTIVE, COMPLETED, CANCELED):
        assert status_code(core_status(code)) == code


def test_no_privileged_intents() -> None:
    i = intents()
    assert i.guilds and i.guild_scheduled_events
    assert not (i.members or i.presences or i.message_content)
    assert (i.value & discord.Intents.default().value) == i.value


def _frame(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"op": 0, "t": kind, "s": 5, "d": data}


async def test_gateway_event_dispatches_reach_the_core() -> None:
    sink = Sink()
    p = DiscordPlatform(DiscordConfig(token="x"), events=sink)
    p.bot_id = 999
    ev = {"id": "77", "guild_id": "10", "status": ACTIVE, "creator_id": "999"}
    await p._on_raw(_frame("GUILD_SCHEDULED_EVENT_UPDATE", ev))
    await p._on_raw(_frame("GUILD_SCHEDULED_EVENT_UPDATE", ev))  # same status again: nothing new
    user = {"guild_scheduled_event_id": "77", "user_id": "5", "guild_id": "10"}
    await p._on_raw(json.dumps(_frame("GUILD_SCHEDULED_EVENT_USER_ADD", user)))  # as discord.py hands it
    await p._on_raw(_frame("GUILD_SCHEDULED_EVENT_USER_REMOVE", user))
    await p._on_raw(_frame("MESSAGE_CREATE", {"id": "1"}))
    await p._on_raw({"op": 11})
    await p._on_raw('{"op": 0, "t": "GUILD_CREATE", "d": {}}')
    await p._on_raw("GUILD_SCHEDULED_EVENT_ not json")
    u = UserRef(Platform.DISCORD, "5")
    assert sink.calls == [
        ("status", Platform.DISCORD, "10", "77", "ACTIVE", None),
        ("interest", Platform.DISCORD, "10", "77", u, True),
        ("interest", Platform.DISCORD, "10", "77", u, False),
    ]


async def test_our_own_status_change_is_not_echoed_as_a_command() -> None:
    sink = Sink()
    p = DiscordPlatform(DiscordConfig(token="x"), events=sink)
    p._event_status["77"] = COMPLETED  # what our PATCH just set
    await p._on_raw(
        _frame("GUILD_SCHEDULED_EVENT_UPDATE", {"id": "77", "guild_id": "10", "status": COMPLETED})
    )
    assert sink.calls == []


async def test_stop_before_start_is_safe_and_idempotent() -> None:
    p = DiscordPlatform(DiscordConfig(token="x"))
    await p.stop()
    await p.stop()


def test_each_shard_group_has_its_own_gateway_lease() -> None:
    def name(**options: Any) -> str:
        return DiscordPlatform(DiscordConfig(token="x", **options)).gateway_lease_name

    assert name() == "discord"
    assert name(shard_count=4) == "discord:shards:all/4"
    assert (
        name(shard_count=4, shard_ids=(1, 0))
        == name(shard_count=4, shard_ids=(0, 1))
        == "discord:shards:0,1/4"
    )
    assert name(shard_count=4, shard_ids=(2, 3)) != name(shard_count=4, shard_ids=(0, 1))
    assert DiscordPlatform.needs_gateway_lease is True


def _error(status: int, code: int, cls: type[discord.HTTPException] = discord.HTTPException) -> Any:
    response = SimpleNamespace(status=status, reason="x")
    return cls(response, {"code": code, "message": "refused"})  # type: ignore[arg-type]


def test_discord_errors_map_onto_the_cores() -> None:
    assert isinstance(_mapped(_error(403, 50007, discord.Forbidden), to_user=True), RecipientUnreachable)
    assert isinstance(_mapped(_error(400, 50007), to_user=True), RecipientUnreachable)  # a bot, say
    assert isinstance(_mapped(_error(404, 10013, discord.NotFound), to_user=True), RecipientUnreachable)
    assert isinstance(_mapped(_error(403, 50013, discord.Forbidden), to_user=True), ChatUnavailable)
    assert isinstance(_mapped(_error(403, 50001, discord.Forbidden), to_user=False), ChatUnavailable)
    assert isinstance(_mapped(_error(404, 10003, discord.NotFound), to_user=False), ChatUnavailable)
    assert isinstance(_mapped(_error(404, 10008, discord.NotFound), to_user=False), ChatUnavailable)
    assert isinstance(_mapped(_error(400, 50035), to_user=False), ChatUnavailable)
    held = _mapped(_error(403, 40003, discord.Forbidden), to_user=True)
    assert isinstance(held, RateLimited) and held.retry_after == 60
    assert isinstance(_mapped(_error(429, 0), to_user=False), RateLimited)


def test_remembered_events_are_bounded() -> None:
    from bots.discord.adapter import _Bounded

    seen: _Bounded[str, int] = _Bounded(2)
    seen["a"], seen["b"], seen["a"], seen["c"] = 1, 2, 3, 4
    assert dict(seen) == {"a": 3, "c": 4}
