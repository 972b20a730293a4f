"""The console platform end to end: the real composition root on a temporary SQLite file, a fake clock,
commands typed into the REPL, and what a user would read on the terminal."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from bots.app import Role, Service, build
from bots.cli import prepare_database
from bots.console.adapter import ConsolePlatform
from bots.console.repl import ConsoleIO
from config.settings import Settings
from core.notices import Action, ActionKind, Notice, callback
from core.notices import Verb as V
from core.refs import ChatRef, MessageRef, Platform, UserRef
from tests.fakes import secrets
from tests.fakes.clock import FakeClock


def settings_for(tmp_path: Path, **extra: str) -> Settings:
    return Settings.from_env(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'spaces.db'}",
            "SPACES_WORKER_ID": "test-1",
            "PORT": "0",
            "SPACES_PUBLIC_URL": "https://spaces.test",
            **extra,
        }
    )


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    settings = settings_for(tmp_path)
    assert await prepare_database(settings) is None  # SQLite: migrated on the spot
    out = io.StringIO()
    svc = await build(settings, clock=FakeClock(), console_io=ConsoleIO(io.StringIO(), out, color=False))
    yield svc
    await svc.stop()
    await svc.stop()  # idempotent


def output(svc: Service) -> str:
    assert svc.console_io is not None
    out = svc.console_io.output
    assert isinstance(out, io.StringIO)
    return out.getvalue()


async def settle(svc: Service) -> None:
    assert svc.waker is not None
    await svc.waker.idle()


async def test_schedule_subscribe_remind_start(service: Service) -> None:
    repl, clock = service.repl, service.clock
    assert repl is not None and isinstance(clock, FakeClock)

    await repl.handle("/space schedule tomorrow 20:00 Weekly AMA")
    await settle(service)  # the card was due at once: the waker ran the engine
    text = output(service)
    (space,) = await service.spaces.upcoming(ChatRef(Platform.CONSOLE, "main"))
    assert (
        "Scheduled ✓\nTitle: Weekly AMA\nTime: Thu 26 Nov 2026, 20:00 UTC\n"
        f"Share it: https://spaces.test/s/{space.id}\n"
        f"🎙️ Speak from your browser (keep this link to yourself): https://spaces.test/s/{space.id}/host?key="
    ) in text
    # the host's private link is on the operator's own terminal only: never on the card in #main
    assert f"Wrong title? `/rename {space.id} <new title>` · Wrong time? `/reschedule {space.id}" in text
    assert "/host?key=" not in text[text.index("[#main] card 1") :]
    assert "[#main] card 1 · Weekly AMA" in text
    assert f"[🔔 Set reminder: /subscribe {space.id}]" in text

    await repl.handle("/as alice")
    await repl.handle(f"/subscribe {space.id}")
    assert "🔔 Reminder set for “Weekly AMA”" in output(service)
    await repl.handle(f"/start {space.id}")  # alice is not the host
    assert "Only the host or a moderator of this community can start this Space." in output(service)

    clock.set(space.starts_at - timedelta(minutes=30))
    await service.engine.deliver_due()
    text = output(service)
    assert "[DM → you] ⏰ Your Space “Weekly AMA” starts in 30 minutes (Thu 26 Nov 2026, 20:00 UTC)." in text
    assert "[#main] (edited card 1) Weekly AMA" in text  # the subscriber count, refreshed
    assert "🔔 1 subscribed" in text

    await repl.handle("/as you")
    await repl.handle(f"/start {space.id}")
    await settle(service)
    text = output(service)
    assert "You're live 🟣 “Weekly AMA” — notifying your subscriber." in text
    assert "[DM → alice] 🟣 “Weekly AMA” is live now — hosted by you." in text
    assert "(edited card 1) 🟣 LIVE Weekly AMA" in text


async def test_errors_are_shown_in_the_users_language(service: Service) -> None:
    repl = service.repl
    assert repl is not None
    await repl.handle("/lang fr")
    await repl.handle("/space schedule hier 20h Trop tard")
    await repl.handle("/start abcd234567")
    await repl.handle("/tz Mars/Olympus")
    await repl.handle("/frobnicate")
    text = output(service)
    assert "Cette heure" in text and "est déjà passée" in text
    assert "Je ne trouve pas de Space avec l'identifiant « abcd234567 »" in text
    assert "Je ne connais pas le fuseau « Mars/Olympus »" in text
    assert "Je ne connais pas /frobnicate. Tapez /help pour voir les commandes." in text


async def test_moderator_can_cancel_and_list(service: Service) -> None:
    repl = service.repl
    assert repl is not None
    await repl.handle("/spaces")
    assert "No upcoming Spaces here." in output(service)
    await repl.handle("/tz Europe/Paris")
    await repl.handle("/space schedule 2026-12-01 18:30 Launch party")
    (space,) = await service.spaces.upcoming(ChatRef(Platform.CONSOLE, "main"))
    assert space.tz == "Europe/Paris"
    await repl.handle("/spaces")
    assert f"  {space.id}  Tue 1 Dec 2026, 18:30 CET  Launch party  [scheduled]" in output(service)
    await repl.handle("/as bob")
    await repl.handle("/mod on")
    await repl.handle(f"/reschedule {space.id} 2026-12-02 18:30")
    assert "Rescheduled ✓\nTitle: Launch party\nTime: Wed 2 Dec 2026, 18:30 CET\n" in output(service)
    await repl.handle(f"/cancel {space.id}")
    assert "Cancelled “Launch party”. Nobody had subscribed yet." in output(service)  # not "being told"


async def test_the_console_speaks_the_chosen_language_everywhere(service: Service) -> None:
    repl = service.repl
    assert repl is not None
    for line in (
        "/lang fr",
        "/help",
        "/tz Europe/Paris",
        "/mod on",
        "/as alice",
        "/lang fr",
        "/as you",
        "/space",
    ):
        await repl.handle(line)
    await repl.handle("/space demain 20h Apéro")
    (space,) = await service.spaces.upcoming(ChatRef(Platform.CONSOLE, "main"))
    await repl.handle("/as alice")
    await repl.handle(f"/subscribe {space.id}")
    await repl.handle("/as you")
    await repl.handle(f"/cancel {space.id}")
    await repl.handle("/quit")
    text = output(service)
    for french in (
        "Langue de you : français.",
        "Commandes (les id sont les codes de 10 caractères affichés sur les cartes) :",
        "/tz <fuseau>                     votre fuseau, par ex. /tz Europe/Paris (actuellement UTC)",
        "Fuseau de you : Europe/Paris.",
        "you est maintenant modérateur de #main.",
        "Vous êtes maintenant alice, auditeur. /as you pour revenir.",
        "Langue de alice : français.",
        "Vous êtes de nouveau « you », l'hôte.",
        "Dites quand et quoi : /space demain 20h AMA hebdo",
        f"  id {space.id} — /as alice puis /subscribe {space.id} pour recevoir ses rappels",
        "🔔 Rappel activé pour « Apéro »",
        "« Apéro » est annulé. Son abonné est prévenu.",
        "Au revoir.",
    ):
        assert french in text, french
    for english in ("Language for", "Time zone for", "Bye.", "Commands (ids", "is now a moderator"):
        assert english not in text


async def test_spaces_lists_times_in_the_readers_zone(service: Service) -> None:
    repl = service.repl
    assert repl is not None
    await repl.handle("/tz Asia/Tokyo")
    await repl.handle("/space 2026-12-01 18:30 Europe/Paris Launch party")  # 17:30 UTC = 02:30 in Tokyo
    (space,) = await service.spaces.upcoming(ChatRef(Platform.CONSOLE, "main"))
    await repl.handle("/as alice")
    await repl.handle("/tz America/New_York")
    await repl.handle("/spaces")
    assert f"  {space.id}  Tue 1 Dec 2026, 12:30 EST  Launch party  [scheduled]" in output(service)
    await repl.handle("/as you")
    await repl.handle("/spaces")
    assert f"  {space.id}  Wed 2 Dec 2026, 02:30 JST  Launch party  [scheduled]" in output(service)


async def test_no_subscribers_is_said_plainly(service: Service) -> None:
    repl = service.repl
    assert repl is not None
    await repl.handle("/space in 2 hours Lonely AMA")
    (space,) = await service.spaces.upcoming(ChatRef(Platform.CONSOLE, "main"))
    await repl.handle(f"/start {space.id}")
    assert "You're live 🟣 “Lonely AMA” — nobody has subscribed yet: share the link!" in output(service)


async def test_a_misread_is_fixed_in_one_step_each(service: Service) -> None:
    """Every schedule reply shows the title and the time apart, and the one command that fixes each."""
    repl = service.repl
    assert repl is not None
    await repl.handle("/tz Europe/Paris")
    await repl.handle("/space tomorrow 8pm Evening prayers")
    await settle(service)  # the card is in the chat
    (space,) = await service.spaces.upcoming(ChatRef(Platform.CONSOLE, "main"))
    assert "Title: Evening prayers\nTime: Thu 26 Nov 2026, 20:00 CET" in output(service)
    await repl.handle(f"/rename {space.id} Evening prayers (week 2)")
    await settle(service)
    text = output(service)
    assert "Renamed ✓\nTitle: Evening prayers (week 2)\nTime: Thu 26 Nov 2026, 20:00 CET" in text
    assert "(edited card 1) Evening prayers (week 2)" in text  # the card in the chat follows
    await repl.handle(f"/reschedule {space.id} tomorrow 21:00")
    assert "Title: Evening prayers (week 2)\nTime: Thu 26 Nov 2026, 21:00 CET" in output(service)
    await repl.handle("/as alice")
    await repl.handle(f"/rename {space.id} Mine now")
    assert "Only the host or a moderator of this community can edit this Space." in output(service)
    assert (await service.spaces.get(space.id)).title == "Evening prayers (week 2)"


async def test_a_time_without_a_title_says_what_was_read(service: Service) -> None:
    repl = service.repl
    assert repl is not None
    await repl.handle("/space in 3 hours")
    await repl.handle("/lang fr")
    await repl.handle("/space demain 20h")
    text = output(service)
    assert "I read the time as Wed 25 Nov 2026, 19:00 UTC, but found no title." in text
    assert "J'ai lu l'heure : jeu. 26 nov. 2026, 20:00 UTC, mais pas de titre." in text
    assert await service.spaces.upcoming(ChatRef(Platform.CONSOLE, "main")) == []
    await repl.handle("/space in 3 hours Second")  # "Second" is the title, not part of the time
    (space,) = await service.spaces.upcoming(ChatRef(Platform.CONSOLE, "main"))
    assert space.title == "Second"


async def test_repl_reads_a_stream_until_quit(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    await prepare_database(settings)
    out = io.StringIO()
    stdin = io.StringIO("/help\n/quit\n/spaces\n")
    svc = await build(
        settings, role=Role.RUN, clock=FakeClock(), console_io=ConsoleIO(stdin, out, color=False)
    )
    try:
        await svc.start()
        await svc.wait()  # /quit asks the service to stop
        text = out.getvalue()
        assert "Spaces 0.1.0 — run" in text  # the banner
        assert "Console ready" in text and "/reschedule <id> <when>" in text and "Bye." in text
        assert "No upcoming Spaces" not in text  # nothing after /quit
        assert svc.web_url is not None
        async with aiohttp.ClientSession() as http, http.get(f"{svc.web_url}/healthz") as resp:
            assert resp.status == 200
            assert (await resp.json())["ok"] is True
    finally:
        await svc.stop()


async def test_worker_and_web_roles(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    await prepare_database(settings)
    out = io.StringIO()
    worker = await build(settings, role=Role.WORKER, clock=FakeClock(), out=out)
    web_only = await build(settings, role=Role.WEB, clock=FakeClock(), out=out)
    try:
        await worker.start()
        await web_only.start()
        assert worker.web_url is None and worker.repl is None and worker.waker is not None
        assert web_only.waker is None and web_only.web_url is not None
        assert await worker.heartbeat() == 1  # beats share one table: one live worker
        assert "worker     none in this process" in out.getvalue()
    finally:
        await worker.stop()
        await web_only.stop()


async def test_banner_without_tokens_says_how_to_connect(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    svc = await build(settings, clock=FakeClock(), out=io.StringIO())
    try:
        banner = "\n".join(svc.banner())
        assert "platforms  console" in banner
        assert "DISCORD_BOT_TOKEN" in banner and "TELEGRAM_BOT_TOKEN" in banner
        assert "SLACK_BOT_TOKEN" in banner and "SLACK_CLIENT_ID" in banner
        assert "console    off (stdin is not a terminal)" in banner
        assert "audio      live Spaces' audio plays here" in banner
        assert "set SPACES_MEDIA_DIR for file: sources" in banner
    finally:
        await svc.stop()


# ------------------------------------------------------------------------------------------ the adapter


async def test_console_platform_prints_readably_and_dedupes_keys() -> None:
    out = io.StringIO()
    p = ConsolePlatform(out, color=False)
    chat = ChatRef(Platform.CONSOLE, "main")
    card = Notice(
        kind="card",
        title="AMA\x1b[31m",
        lines=("🗓 soon",),
        space_id="abcd234567",
        actions=(
            Action("Join", ActionKind.URL, "https://spaces.test/s/abcd234567"),
            Action("End", ActionKind.CALLBACK, callback(V.END, "abcd234567"), host_only=True),
        ),
    )
    ref = await p.post(chat, card, key="k1")
    assert ref == MessageRef(Platform.CONSOLE, "main", "1")
    assert await p.post(chat, card, key="k1") == ref  # same key: not shown twice
    await p.edit(ref, Notice(kind="card", title="AMA", marker="🟣 LIVE"))
    dm = await p.direct(
        UserRef(Platform.CONSOLE, "alice"), Notice(kind="live_notice", title="Live!"), key="k2"
    )
    await p.mention(
        chat, {UserRef(Platform.CONSOLE, "bob"): "bob"}, Notice(kind="live_notice", title="Live!"), key="k3"
    )
    assert dm.id == "2"
    text = out.getvalue()
    assert text.count("card 1 ·") == 1
    assert "\x1b" not in text  # hostile escape sequences are neutralised
    assert "[Join → https://spaces.test/s/abcd234567] [End: /end abcd234567 (host)]" in text
    assert "[#main] (edited card 1) 🟣 LIVE AMA" in text
    assert "[DM → alice] Live!" in text
    assert "[#main] @bob — I couldn't message you privately: Live!" in text


async def test_console_colours_only_on_a_terminal() -> None:
    out = io.StringIO()
    p = ConsolePlatform(out, color=True)
    await p.direct(UserRef(Platform.CONSOLE, "alice"), Notice(kind="x", title="hi"), key="k")
    assert "\x1b[35m[DM → alice]\x1b[0m" in out.getvalue()
    assert ConsolePlatform(io.StringIO())._style.enabled is False


async def test_telegram_is_wired_when_configured(tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path,
        TELEGRAM_BOT_TOKEN=secrets.TELEGRAM_TOKEN,
        TELEGRAM_MODE="webhook",
        TELEGRAM_WEBHOOK_SECRET=secrets.TELEGRAM_WEBHOOK_SECRET,
        TELEGRAM_API_BASE="http://127.0.0.1:9/bot",
    )
    web_only = await build(settings, role=Role.WEB, clock=FakeClock(), out=io.StringIO())
    worker = await build(settings, role=Role.WORKER, clock=FakeClock(), out=io.StringIO())
    try:
        assert {p.platform for p in web_only.router.platforms} == {Platform.CONSOLE, Platform.TELEGRAM}
        paths = {r.resource.canonical for r in web_only.web_app.router.routes() if r.resource is not None}
        assert "/telegram/webhook" in paths
        worker_paths = {
            r.resource.canonical for r in worker.web_app.router.routes() if r.resource is not None
        }
        assert "/telegram/webhook" not in worker_paths  # workers send; the web process receives
    finally:
        await web_only.stop()
        await worker.stop()


def test_telegram_file_base() -> None:
    from bots.app import _telegram_file_base

    assert _telegram_file_base("https://api.telegram.org/bot") == "https://api.telegram.org/file/bot"
    assert _telegram_file_base("http://127.0.0.1:8081/bot") == "http://127.0.0.1:8081/file/bot"


async def test_source_from_the_console(service: Service) -> None:
    repl = service.repl
    assert repl is not None
    await repl.handle("/space schedule tomorrow 20:00 Radio hour")
    (space,) = await service.spaces.upcoming(ChatRef(Platform.CONSOLE, "main"))
    await repl.handle(f"/source {space.id} https://radio.example/live.mp3")
    assert "🎙️ Audio source of “Radio hour”: https://radio.example/…" in output(service)
    assert (await service.spaces.get(space.id)).audio_source == "https://radio.example/live.mp3"
    await repl.handle(f"/source {space.id} file:../secrets")
    assert "isn't a file name in the media folder" in output(service)
    await repl.handle(f"/source {space.id}")
    assert "Usage: /source <id> <source>" in output(service)
