"""Live audio's commands over the gateway: the real discord.py against the Discord emulator, on the real core,
storage and delivery engine. A host schedules with a source and starts with another, a moderator of another
server brings the Space into that server's voice channel by its share link, a member without the right is
refused — and the host's private link reaches the host alone: it is in no message anyone else can see."""

from __future__ import annotations

import json

from bots.discord.translate import chat_ref
from core.models import SpaceStatus
from core.services.audio import AudioService
from tests.bots.discord.test_gateway_flows import World, _chat
from tests.bots.discord.test_gateway_flows import world as world  # the fixture
from tests.fakes.discord import DcMember, Perm


def _everything_public(w: World) -> str:
    """Every message in the emulator that someone other than the asker can see, as text."""
    shown = [m for m in w.dc.messages.values() if not m.ephemeral]
    return "\n".join(json.dumps([m.content, m.embeds, m.components], default=str) for m in shown)


async def _answer(
    w: World, who: DcMember, guild_channel: tuple[object, object], name: str, **options: object
) -> str:
    guild, channel = guild_channel
    rec = await w.dc.run_command(guild, channel, who, f"space {name}", options)  # type: ignore[arg-type]
    [answer] = await w.dc.wait_for_followups(rec)
    assert rec.ephemeral and answer.ephemeral  # only the one who asked sees it
    return answer.content


async def test_sources_bridges_and_the_host_link_over_the_gateway(world: World) -> None:
    w, dc = world, world.dc
    here = (w.guild, w.channel)
    stage = dc.add_channel(w.guild, "Stage", 13)
    text = await w.command(w.host, "schedule", title="Jam", when="tomorrow 20:00", source="browser")
    [space] = await w.core.spaces.upcoming(_chat(w))
    assert space.audio_source == "browser"
    link = f"https://spaces.test/s/{space.id}/host?key={space.host_key}"
    assert link in text  # an ephemeral follow-up: the host's eyes only
    await w.engine.deliver_due()
    await dc.wait_for_message(w.channel, lambda m: bool(m.embeds))

    # a refused source is said next to nothing stored
    said = await _answer(w, w.host, here, "source", space=space.id, source="file:/etc/passwd")
    assert "media folder" in said and (await w.core.spaces.get(space.id)).audio_source == "browser"
    said = await _answer(w, w.host, here, "source", space=space.id, source="https://radio.example/live")
    assert said.startswith("🎙️") and "radio.example" in said
    said = await _answer(w, w.alice, here, "source", space=space.id, source="browser")
    assert "Only the host or a moderator" in said

    # the host bridges the server's stage; another server's moderator brings the Space in by its link
    said = await _answer(w, w.host, here, "bridge", space=space.id, channel=str(stage.id))
    assert "Stage" in said
    other = dc.create_guild("Other")
    lounge = dc.add_channel(other, "Lounge", 2)
    managers = dc.add_role(other, "Managers", Perm.MANAGE_EVENTS)
    their_mod = dc.add_member(other, w.bob.user, roles=[managers])
    their_host = dc.add_member(other, w.host.user)
    general = next(c for c in other.channels.values() if c.name == "general")
    there = (other, general)
    said = await _answer(w, their_host, there, "bridge", space=space.id, channel=str(lounge.id))
    assert "Only a moderator of this server" in said
    said = await _answer(
        w, their_mod, there, "bridge", space=f"https://spaces.test/s/{space.id}", channel=str(lounge.id)
    )
    assert said.startswith("🔊") and "Lounge" in said

    # live with a source given at start: the host's link again, privately
    said = await _answer(w, w.host, here, "start", space=space.id, source="mic")
    assert said.startswith("You're live") and link in said
    await w.engine.deliver_due()
    assert (await w.core.spaces.get(space.id)).status is SpaceStatus.LIVE
    [live] = await AudioService(w.core.db.uow, w.core.clock).live_audio()
    assert live.space_id == space.id and str(live.source) == "browser"
    assert live.channels == (
        chat_ref(str(stage.id), str(w.guild.id)),
        chat_ref(str(lounge.id), str(other.id)),
    )
    said = await _answer(w, their_mod, there, "unbridge", space=space.id, channel=str(lounge.id))
    assert "no longer plays" in said

    # nowhere public: not on the card, the live edit, any channel message
    public = _everything_public(w)
    assert space.id in public and space.host_key not in public
    for message in dc.messages.values():
        if space.host_key in json.dumps([message.content, message.embeds], default=str):
            assert message.ephemeral
