"""Live audio in the core, on every persistence backend: sources (validated, stored parsed, refused whole),
the host key, bridged voice channels (who may, the limit, idempotence), the Spaces whose audio must play,
and the host told once per problem through the outbox — in the host's language, the private link never
reaching anyone else."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.commands import (
    BridgeChannel,
    EndSpace,
    ScheduleSpace,
    SetAudioSource,
    StartSpace,
    Subscribe,
    UnbridgeChannel,
)
from core.errors import NotAllowed, NotFound, TooManySpaces, UserError, WrongState
from core.models import DeliveryKind, DeliveryStatus, Space, UserProfile
from core.refs import ChatRef, Platform, UserRef
from core.rules import MAX_BRIDGED, Actor
from core.services.audio import AudioService
from core.texts import t
from tests.conftest import CoreEnv, StaticLinks

GUILD_A, GUILD_B = "100", "200"
TEXT_A = ChatRef(Platform.DISCORD, "11", scope=GUILD_A)
VOICE_A = ChatRef(Platform.DISCORD, "12", scope=GUILD_A)
VOICE_A2 = ChatRef(Platform.DISCORD, "13", scope=GUILD_A)
VOICE_B = ChatRef(Platform.DISCORD, "22", scope=GUILD_B)
HOST = UserRef(Platform.DISCORD, "1")
MOD_B = UserRef(Platform.DISCORD, "2")
SOMEONE = UserRef(Platform.DISCORD, "3")
FAN = UserRef(Platform.DISCORD, "4")


def audio(env: CoreEnv) -> AudioService:
    return AudioService(env.db.uow, env.clock, env.wake)


def host(locale: str = "en") -> Actor:
    return Actor(HOST, locale=locale)


async def schedule(env: CoreEnv, *, source: str | None = None, voice: ChatRef | None = VOICE_A) -> Space:
    return await env.spaces.schedule(
        ScheduleSpace(
            actor=host(),
            chat=TEXT_A,
            title="Jam",
            when_text="2026-11-25 20:00",
            audio_source=source,
            voice=voice,
        )
    )


# --------------------------------------------------------------------------- sources


async def test_a_source_given_at_scheduling_is_stored_in_its_parsed_form(core_env: CoreEnv) -> None:
    space = await schedule(core_env, source="Micro")
    assert space.audio_source == "browser"
    stream = await schedule(core_env, source="https://radio.example/live.mp3")
    assert (await core_env.spaces.get(stream.id)).audio_source == "https://radio.example/live.mp3"


async def test_a_refused_source_stores_nothing_and_names_the_source_field(core_env: CoreEnv) -> None:
    for bad in ("file:///etc/passwd", "file:../secret.ogg", "ftp://x.example/a", "concat:a|b"):
        with pytest.raises(UserError) as e:
            await schedule(core_env, source=bad)
        assert e.value.field == "source" and e.value.key in ("audio.bad_source", "audio.bad_file")
    assert await core_env.space_count() == 0 and await core_env.deliveries() == []
    # said in the host's language
    assert "file:<nom>" in t("fr", e.value.key, **e.value.params)


async def test_start_with_a_source_sets_it_and_a_refused_one_leaves_the_space_scheduled(
    core_env: CoreEnv,
) -> None:
    space = await schedule(core_env)
    with pytest.raises(UserError) as e:
        await core_env.spaces.start(StartSpace(host(), space.id, audio_source="javascript:alert(1)"))
    assert e.value.field == "source"
    assert (await core_env.spaces.get(space.id)).status.value == "scheduled"
    res = await core_env.spaces.start(StartSpace(host(), space.id, audio_source="srt://media.example:9000"))
    assert res.space.status.value == "live" and res.space.audio_source == "srt://media.example:9000"


async def test_host_or_moderator_sets_and_clears_the_source_while_open(core_env: CoreEnv) -> None:
    svc = audio(core_env)
    space = await schedule(core_env)
    with pytest.raises(NotAllowed):
        await svc.set_source(SetAudioSource(Actor(SOMEONE), space.id, "browser"))
    assert (await core_env.spaces.get(space.id)).audio_source is None
    await svc.set_source(SetAudioSource(Actor(SOMEONE, is_moderator=True), space.id, "mic"))
    assert (await core_env.spaces.get(space.id)).audio_source == "browser"
    with pytest.raises(UserError):
        await svc.set_source(SetAudioSource(host(), space.id, "rtmp://"))
    assert (await core_env.spaces.get(space.id)).audio_source == "browser"  # unchanged on refusal
    await svc.set_source(SetAudioSource(host(), space.id, None))
    assert (await core_env.spaces.get(space.id)).audio_source is None
    await core_env.spaces.start(StartSpace(host(), space.id))
    await svc.set_source(SetAudioSource(host(), space.id, "file:intro.ogg"))  # live: still allowed
    await core_env.spaces.end(EndSpace(host(), space.id))
    with pytest.raises(WrongState):
        await svc.set_source(SetAudioSource(host(), space.id, "browser"))


async def test_changing_the_source_edits_no_card_and_notifies_nobody(core_env: CoreEnv) -> None:
    space = await schedule(core_env)
    before = len(await core_env.deliveries())
    await audio(core_env).set_source(SetAudioSource(host(), space.id, "browser"))
    await audio(core_env).bridge(BridgeChannel(host(), space.id, VOICE_A2))
    assert len(await core_env.deliveries()) == before


# --------------------------------------------------------------------------- the host key


async def test_each_space_gets_its_own_host_key_and_only_it_opens_the_host_page(core_env: CoreEnv) -> None:
    svc = audio(core_env)
    one, two = await schedule(core_env), await schedule(core_env)
    assert len(one.host_key) >= 32 and one.host_key != two.host_key
    assert (await svc.check_host_key(one.id, one.host_key)).id == one.id
    pages = AudioService(core_env.db.uow, core_env.clock, links=StaticLinks())
    assert pages.host_page(one) == f"https://spaces.test/s/{one.id}/host?key={one.host_key}"
    for space_id, key in ((one.id, two.host_key), (one.id, ""), (one.id, one.host_key[:-1]), ("nope", "x")):
        with pytest.raises(NotFound):
            await svc.check_host_key(space_id, key)


# --------------------------------------------------------------------------- bridged channels


async def test_the_host_bridges_a_channel_of_the_spaces_own_server_not_another(core_env: CoreEnv) -> None:
    svc = audio(core_env)
    space = await schedule(core_env)
    await svc.bridge(BridgeChannel(host(), space.id, VOICE_A2))
    with pytest.raises(NotAllowed) as e:
        await svc.bridge(BridgeChannel(host(), space.id, VOICE_B))
    assert "moderator" in t("en", e.value.key, **e.value.params)
    assert [b.channel for b in await svc.channels(space.id)] == [VOICE_A2]


async def test_a_moderator_of_another_server_brings_the_space_into_its_voice_channel(
    core_env: CoreEnv,
) -> None:
    svc = audio(core_env)
    space = await schedule(core_env)
    with pytest.raises(NotAllowed):  # a member of guild B without the permission
        await svc.bridge(BridgeChannel(Actor(SOMEONE), space.id, VOICE_B))
    # is_moderator is about the CHANNEL's guild (B): a community brings any open Space in
    res = await svc.bridge_result(BridgeChannel(Actor(MOD_B, is_moderator=True), space.id, VOICE_B))
    assert res.changed
    (bridge,) = await svc.channels(space.id)
    assert (bridge.channel, bridge.added_by) == (VOICE_B, MOD_B)
    # the host may take their Space out of any channel; a stranger may not
    with pytest.raises(NotAllowed):
        await svc.unbridge(UnbridgeChannel(Actor(SOMEONE), space.id, VOICE_B))
    assert (await svc.unbridge_result(UnbridgeChannel(host(), space.id, VOICE_B))).changed
    assert await svc.channels(space.id) == []


async def test_bridging_is_idempotent_and_the_spaces_own_channel_is_not_added(core_env: CoreEnv) -> None:
    svc = audio(core_env)
    space = await schedule(core_env)
    assert (await svc.bridge_result(BridgeChannel(host(), space.id, VOICE_A2))).changed
    assert not (await svc.bridge_result(BridgeChannel(host(), space.id, VOICE_A2))).changed
    assert not (await svc.bridge_result(BridgeChannel(host(), space.id, VOICE_A))).changed  # Space.voice
    assert not (await svc.unbridge_result(UnbridgeChannel(host(), space.id, VOICE_B))).changed
    assert [b.channel for b in await svc.channels(space.id)] == [VOICE_A2]


async def test_at_most_max_bridged_channels_and_nothing_stored_beyond(core_env: CoreEnv) -> None:
    svc = audio(core_env)
    space = await schedule(core_env)
    mod = Actor(MOD_B, is_moderator=True)
    for i in range(MAX_BRIDGED):
        await svc.bridge(BridgeChannel(mod, space.id, ChatRef(Platform.DISCORD, f"9{i}", scope=GUILD_B)))
    with pytest.raises(TooManySpaces) as e:
        await svc.bridge(BridgeChannel(mod, space.id, ChatRef(Platform.DISCORD, "999", scope=GUILD_B)))
    assert str(MAX_BRIDGED) in t("fr", e.value.key, **e.value.params)
    assert len(await svc.channels(space.id)) == MAX_BRIDGED
    # one already there is still fine (idempotent), and removing one makes room
    await svc.bridge(BridgeChannel(mod, space.id, ChatRef(Platform.DISCORD, "90", scope=GUILD_B)))
    await svc.unbridge(UnbridgeChannel(mod, space.id, ChatRef(Platform.DISCORD, "90", scope=GUILD_B)))
    await svc.bridge(BridgeChannel(mod, space.id, ChatRef(Platform.DISCORD, "999", scope=GUILD_B)))


async def test_a_finished_space_cannot_be_bridged_and_a_channel_must_be_a_servers(core_env: CoreEnv) -> None:
    svc = audio(core_env)
    space = await schedule(core_env)
    with pytest.raises(UserError) as e:
        await svc.bridge(BridgeChannel(host(), space.id, ChatRef(Platform.DISCORD, "dm")))
    assert e.value.key == "bridge.not_voice"
    await core_env.spaces.start(StartSpace(host(), space.id))
    await core_env.spaces.end(EndSpace(host(), space.id))
    with pytest.raises(WrongState):
        await svc.bridge(BridgeChannel(host(), space.id, VOICE_A2))
    assert await svc.channels(space.id) == []


# --------------------------------------------------------------------------- what must be playing


async def test_live_audio_lists_live_spaces_with_a_source_own_channel_first(core_env: CoreEnv) -> None:
    svc = audio(core_env)
    mod = Actor(MOD_B, is_moderator=True)
    playing = await schedule(core_env, source="https://radio.example/a")
    silent = await schedule(core_env)  # live, no source: nothing to play
    later = await schedule(core_env, source="browser")  # has a source, not live yet
    no_voice = await schedule(core_env, source="mic", voice=None)
    await svc.bridge(BridgeChannel(mod, playing.id, VOICE_B))
    core_env.clock.advance(timedelta(seconds=1))  # then in the order they were bridged
    await svc.bridge(BridgeChannel(host(), playing.id, VOICE_A2))
    for s in (playing, silent, no_voice):
        await core_env.spaces.start(StartSpace(host(), s.id))
        core_env.clock.advance(timedelta(seconds=1))
    found = await svc.live_audio()
    assert [a.space_id for a in found] == [playing.id, no_voice.id]
    first = found[0]
    assert first.channels == (VOICE_A, VOICE_B, VOICE_A2) and first.host == HOST and first.locale == "en"
    assert str(first.source) == "https://radio.example/a"
    assert found[1].channels == () and found[1].source.kind.value == "browser"
    assert later.id not in {a.space_id for a in found}
    await core_env.spaces.end(EndSpace(host(), playing.id))
    assert [a.space_id for a in await svc.live_audio()] == [no_voice.id]


# --------------------------------------------------------------------------- problems, told to the host


async def _live(env: CoreEnv, **kw: object) -> Space:
    space = await schedule(env, source="https://radio.example/a", **kw)  # type: ignore[arg-type]
    await env.spaces.start(StartSpace(host(), space.id))
    await env.run()
    return space


async def test_a_problem_is_told_to_the_host_once_in_their_language(core_env: CoreEnv) -> None:
    space = await _live(core_env)
    async with core_env.db.uow() as uow:
        await uow.users.upsert(UserProfile(HOST, locale="fr"))  # the host's language when it is sent
        await uow.commit()
    svc = audio(core_env)
    await svc.report_problem(space.id, "audio.problem.source", detail="HTTP 404")
    await svc.report_problem(space.id, "audio.problem.source", detail="HTTP 404 again")
    assert core_env.wake.earliest is not None
    await core_env.run()
    (dm,) = [d for d in core_env.platform.dms_to(HOST) if d.notice.kind == DeliveryKind.HOST_PROBLEM]
    assert dm.notice.title == "⚠️ Le son de « Jam » ne fonctionne pas : la source est illisible (HTTP 404)"
    assert f"/source {space.id} browser" in dm.notice.lines[0]
    # another problem is its own message
    await svc.report_problem(space.id, "audio.problem.voice", channel="#stage", detail="Missing Permissions")
    await core_env.run()
    problems = [d for d in core_env.platform.dms_to(HOST) if d.notice.kind == DeliveryKind.HOST_PROBLEM]
    assert len(problems) == 2 and "#stage" in problems[1].notice.title


async def test_a_problem_reaches_a_host_with_closed_dms_as_a_mention(core_env: CoreEnv) -> None:
    space = await _live(core_env)
    core_env.platform.closed_dms.add(HOST)
    await audio(core_env).report_problem(space.id, "audio.problem.browser")
    await core_env.run()
    await core_env.run()
    (mention,) = core_env.platform.of("mention")
    assert mention.target == str(TEXT_A) and mention.users == (HOST,)
    assert "your browser stopped sending sound" in mention.notice.title
    assert space.host_key not in mention.notice.plain()


async def test_nothing_is_reported_for_a_space_that_is_not_live(core_env: CoreEnv) -> None:
    space = await schedule(core_env, source="browser")
    await audio(core_env).report_problem(space.id, "audio.problem.browser")
    await audio(core_env).report_problem("unknown", "audio.problem.browser")
    assert not [d for d in await core_env.deliveries() if d.kind is DeliveryKind.HOST_PROBLEM]
    live = await _live(core_env)
    await audio(core_env).report_problem(live.id, "audio.problem.browser")
    await core_env.spaces.end(EndSpace(host(), live.id))
    await core_env.run()
    (row,) = [d for d in await core_env.deliveries() if d.kind is DeliveryKind.HOST_PROBLEM]
    assert row.status is DeliveryStatus.SKIPPED  # ended before it went out: the audio is over
    with pytest.raises(ValueError):
        await audio(core_env).report_problem(live.id, "no.such.text")


# --------------------------------------------------------------------------- the private link


async def test_the_host_link_is_in_the_hosts_reminders_and_nowhere_else(core_env: CoreEnv) -> None:
    space = await schedule(core_env, source="browser")
    await core_env.spaces.subscribe(Subscribe(FAN, space.id, via_chat=TEXT_A))
    core_env.platform.closed_dms.add(SOMEONE)
    await core_env.spaces.subscribe(Subscribe(SOMEONE, space.id, via_chat=TEXT_A))
    core_env.clock.set(space.starts_at - timedelta(minutes=30))
    await core_env.run()
    core_env.clock.set(space.starts_at)
    await core_env.run()
    await core_env.spaces.start(StartSpace(host(), space.id))
    await core_env.run()
    await core_env.run()
    link = f"https://spaces.test/s/{space.id}/host?key={space.host_key}"
    reminders = core_env.platform.dms_to(HOST)
    assert [d.notice.kind for d in reminders] == [DeliveryKind.HOST_T30, DeliveryKind.HOST_T0]
    assert all(any(link in line for line in d.notice.lines) for d in reminders)
    others = [s for s in core_env.platform.sent if s.target != str(HOST)]
    assert {s.op for s in others} >= {"post", "edit", "direct", "mention"}
    for sent in others:
        assert space.host_key not in sent.notice.plain()
        assert all(space.host_key not in a.value for a in sent.notice.actions)


async def test_a_host_reminder_that_falls_back_to_a_mention_has_no_host_link(core_env: CoreEnv) -> None:
    space = await schedule(core_env, source="browser")
    core_env.platform.closed_dms.add(HOST)
    core_env.clock.set(space.starts_at)
    await core_env.run()
    await core_env.run()
    mentions = core_env.platform.of("mention")
    assert mentions and all(space.host_key not in m.notice.plain() for m in mentions)


async def test_the_host_key_is_never_in_a_spaces_repr(core_env: CoreEnv) -> None:
    space = await schedule(core_env)
    assert space.host_key and space.host_key not in repr(space)
    assert space.host_key not in repr(await core_env.spaces.get(space.id))
