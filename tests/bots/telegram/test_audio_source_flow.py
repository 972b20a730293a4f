"""Telegram end to end, live audio's side: ``/source`` in a group and in the private chat, refused for others
and for a bad source (in the member's language), and the host's private link only in the host's private chat
(Telegram posts a group's answers for everyone: it never goes there)."""

from __future__ import annotations

from datetime import timedelta

from tests.bots.telegram.conftest import TgEnv
from tests.bots.telegram.test_flows import _space, schedule_in_group


async def test_source_in_the_group_and_the_private_link_in_private_only(tg_env: TgEnv) -> None:
    env, tg = tg_env, tg_env.tg
    host, group, _card = await schedule_in_group(env)
    space = await _space(env, group)
    await tg.user_starts_bot(host)
    await tg.wait_for_message(host.id, lambda m: "Hi" in m.text)

    await tg.user_sends(host, group, f"/source {space.id} rtmp://live.example/app/SECRETKEY")
    said = await tg.wait_for_message(group, lambda m: "Audio source" in m.text)
    assert "rtmp://live.example/…" in said.text and "SECRETKEY" not in said.text
    assert (await env.spaces.get(space.id)).audio_source == "rtmp://live.example/app/SECRETKEY"

    kim = tg.create_user("Kim", language_code="fr", started=True)
    await tg.user_sends(kim, group, f"/source {space.id} browser")
    await tg.wait_for_message(group, lambda m: "Seul l'hôte" in m.text)
    await tg.user_sends(host, group, f"/source {space.id} file:../../etc/passwd")
    await tg.wait_for_message(group, lambda m: "media folder" in m.text)
    await tg.user_sends(host, group, f"/source {space.id}")
    await tg.wait_for_message(group, lambda m: m.text.startswith("Usage: /source"))

    # in the private chat: the link to speak from the browser
    await tg.user_sends(host, None, f"/source {space.id} browser")
    private = await tg.wait_for_message(host.id, lambda m: "Speak from your browser" in m.text)
    link = f"https://spaces.example/s/{space.id}/host?key={space.host_key}"
    assert link in private.text
    assert (await env.spaces.get(space.id)).audio_source == "browser"

    # the host's reminders carry it too (a private chat)
    env.clock.set(space.starts_at - timedelta(minutes=30))
    await env.deliver()
    [reminder] = [m for m in tg.bot_messages(host.id) if "⏰" in m.text]
    assert link in reminder.text

    # and the group never saw it
    assert all(space.host_key not in m.text for m in tg.bot_messages(group))
    assert all(space.host_key not in m.text for m in tg.bot_messages(kim.id))
    tg.assert_clean()


async def test_live_with_a_source_in_the_private_chat_gives_the_host_the_link(tg_env: TgEnv) -> None:
    env, tg = tg_env, tg_env.tg
    host, group, _card = await schedule_in_group(env)
    space = await _space(env, group)
    await tg.user_sends(host, None, f"/live {space.id} mic")
    said = await tg.wait_for_message(host.id, lambda m: "You're live" in m.text)
    assert f"/s/{space.id}/host?key={space.host_key}" in said.text
    live = await env.spaces.get(space.id)
    assert live.status.value == "live" and live.audio_source == "browser"
    await env.deliver()
    assert all(space.host_key not in m.text for m in tg.bot_messages(group))
    tg.assert_clean()
