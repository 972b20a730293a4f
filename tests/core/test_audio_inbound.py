"""Live audio through the one inbound path: ``/source``, a source at scheduling and at start, bridging — and the
host's private link only in answers that reach the host alone (a private chat, an ephemeral answer)."""

from __future__ import annotations

import dataclasses

from core.notices import Verb
from core.refs import ChatRef, Platform, UserRef
from core.services import inbound as ib
from core.services.audio import AudioService
from core.texts import t
from tests.conftest import CoreEnv
from tests.core.test_inbound import DM, GROUP, Mods, request, service, texts

GUILD_A = "100"
TEXT_A = ChatRef(Platform.DISCORD, "11", scope=GUILD_A)
VOICE_B = ChatRef(Platform.DISCORD, "22", scope="200")
DC_HOST = UserRef(Platform.DISCORD, "1")
DC_MOD = UserRef(Platform.DISCORD, "2")


async def _schedule(env: CoreEnv, req: ib.Request, source: str = "") -> list[str]:
    return texts(
        await service(env).handle(req, ib.Schedule(title="Jam", when="tomorrow 20:00", source=source))
    )


def _link(space_id: str, key: str) -> str:
    return f"https://spaces.test/s/{space_id}/host?key={key}"


async def test_the_host_link_is_in_private_and_ephemeral_answers_only(core_env: CoreEnv) -> None:
    (in_dm,) = await _schedule(core_env, request(), source="browser")
    (space,) = await core_env.spaces.upcoming(DM)
    assert _link(space.id, space.host_key) in in_dm and "Speak from your browser" in in_dm
    # a group on a platform that posts every answer (Telegram, the console): never there
    (in_group,) = await _schedule(core_env, request(chat=GROUP), source="browser")
    (grouped,) = await core_env.spaces.upcoming(GROUP)
    assert grouped.host_key not in in_group and "/host?key=" not in in_group
    # the same group where the platform shows the answer to the asker alone (a Discord interaction)
    ephemeral = dataclasses.replace(request(chat=GROUP), ephemeral=True)
    (answer,) = await _schedule(core_env, ephemeral)
    (newest,) = [s for s in await core_env.spaces.upcoming(GROUP) if s.id != grouped.id]
    assert _link(newest.id, newest.host_key) in answer


async def test_source_command_sets_says_and_clears_in_the_askers_language(core_env: CoreEnv) -> None:
    await _schedule(core_env, request())
    (space,) = await core_env.spaces.upcoming(DM)
    inbound = service(core_env)
    (said,) = texts(
        await inbound.handle(request(), ib.SetSource(space.id, "rtmp://live.example/app/SECRETKEY"))
    )
    # the stream is named by its host only: its path may hold a stream key
    assert said.startswith("🎙️ Audio source of “Jam”: rtmp://live.example/…") and "SECRETKEY" not in said
    assert (await core_env.spaces.get(space.id)).audio_source == "rtmp://live.example/app/SECRETKEY"
    (said,) = texts(await inbound.handle(request(locale="fr"), ib.SetSource(space.id.upper(), "micro")))
    assert said.startswith("🎙️ « Jam » diffusera votre micro") and _link(space.id, space.host_key) in said
    (said,) = texts(await inbound.handle(request(), ib.SetSource(space.id, "none")))
    assert said.startswith(t("en", "reply.source_cleared", title="Jam"))
    assert (await core_env.spaces.get(space.id)).audio_source is None
    (said,) = texts(await inbound.handle(request(locale="fr"), ib.SetSource(space.id, "file:../x")))
    assert said == t("fr", "audio.bad_file", text="file:../x")
    (said,) = texts(await inbound.handle(request(), ib.SetSource("nope", "browser")))
    assert said == t("en", "usage.source")


async def test_only_the_host_or_a_moderator_sets_the_source(core_env: CoreEnv) -> None:
    await _schedule(core_env, request(chat=GROUP))
    (space,) = await core_env.spaces.upcoming(GROUP)
    alice = UserRef(Platform.CONSOLE, "alice")
    (said,) = texts(await service(core_env).handle(request(alice, GROUP), ib.SetSource(space.id, "browser")))
    assert said == t("en", "perm.not_allowed", action=t("en", "action.source"))
    mods = Mods(alice)
    (said,) = texts(
        await service(core_env).handle(request(alice, GROUP, mods=mods), ib.SetSource(space.id, "browser"))
    )
    assert said.startswith("🎙️") and mods.calls == [(GROUP, alice)]
    assert space.host_key not in said  # a moderator is not the host: no private link for them


async def test_start_with_a_source_goes_live_with_it_and_gives_the_host_the_link(core_env: CoreEnv) -> None:
    await _schedule(core_env, request())
    (space,) = await core_env.spaces.upcoming(DM)
    answers = await service(core_env).handle(request(), ib.Manage(Verb.START, space.id, "live", source="mic"))
    (said,) = texts(answers)
    assert said.startswith("You're live") and _link(space.id, space.host_key) in said
    assert (await core_env.spaces.get(space.id)).audio_source == "browser"


async def test_a_moderator_of_another_server_bridges_by_share_link(core_env: CoreEnv) -> None:
    dc_dm = ChatRef(Platform.DISCORD, "dm")
    dc_req = dataclasses.replace(request(DC_HOST, TEXT_A), ephemeral=True)
    await _schedule(core_env, dc_req)
    (space,) = await core_env.spaces.upcoming(TEXT_A)
    mods = Mods(DC_MOD)
    req = dataclasses.replace(request(DC_MOD, dc_dm, mods=mods), ephemeral=True)
    bridge = ib.Bridge(f"https://spaces.test/s/{space.id}", VOICE_B, "<#22>")
    (said,) = texts(await service(core_env).handle(req, bridge))
    assert said == t("en", "reply.bridged", title="Jam", channel="<#22>")
    assert mods.calls == [(VOICE_B, DC_MOD)]  # asked about the CHANNEL's server, not the Space's
    (said,) = texts(await service(core_env).handle(req, bridge))
    assert said == t("en", "reply.already_bridged", title="Jam", channel="<#22>")
    channels = await AudioService(core_env.db.uow, core_env.clock).channels(space.id)
    assert [c.channel for c in channels] == [VOICE_B]
    (said,) = texts(await service(core_env).handle(req, dataclasses.replace(bridge, remove=True)))
    assert said == t("en", "reply.unbridged", title="Jam", channel="<#22>")
    # the host cannot bring it into another server; a bad id is the usage
    host_req = dataclasses.replace(request(DC_HOST, TEXT_A), ephemeral=True)
    (said,) = texts(await service(core_env).handle(host_req, bridge))
    assert said == t("en", "perm.bridge")
    (said,) = texts(await service(core_env).handle(host_req, ib.Bridge("x", VOICE_B, "<#22>")))
    assert said == t("en", "usage.bridge")
