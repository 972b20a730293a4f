"""``POST /slack/events`` only acts on what Slack signed, recently, once.

Bolt checks ``X-Slack-Signature`` (HMAC-SHA256 of ``v0:{timestamp}:{body}`` with the signing secret) and
that the timestamp is within 5 minutes; anything else is a 401 and changes nothing. Slack retries events it
thinks un-acknowledged (``X-Slack-Retry-Num``) and Bolt does not deduplicate: the handlers claim each
event id (and each command's trigger id) in the database before acting.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from slack_sdk.signature import SignatureVerifier

from bots.slack.handlers import EVENTS_PATH, REDIRECT_PATH
from bots.slack.workspaces import SCOPES
from tests.backends import migrated_database
from tests.bots.slack.handlers_env import SlackEnv, handlers_for, slack_env
from tests.conftest import CoreEnv

MANIFEST = Path(__file__).parents[3] / "config" / "slack-manifest.yml"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def store_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str | None]]:
    # the claims live in the database every process shares: both real backends
    with migrated_database(request.param, tmp_path_factory.mktemp("db")) as url:
        yield request.param, url


@pytest.fixture
async def env(core_env: CoreEnv) -> AsyncIterator[SlackEnv]:
    async with slack_env(core_env) as env:
        yield env


def _command_body(env: SlackEnv, text: str) -> bytes:
    return urlencode(
        {
            "team_id": env.team.id,
            "channel_id": env.channel.id,
            "user_id": env.host.id,
            "user_name": env.host.name,
            "command": "/space",
            "text": text,
            "response_url": f"{env.emu.api_base}../respond/none",
            "trigger_id": "1.2.forged",
        }
    ).encode()


def _headers(secret: str, body: bytes, stamp: int) -> dict[str, str]:
    signature = SignatureVerifier(secret).generate_signature(timestamp=str(stamp), body=body)
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": str(stamp),
        "X-Slack-Signature": signature,
    }


async def test_a_bad_signature_gets_401_and_changes_nothing(env: SlackEnv) -> None:
    body = _command_body(env, "tomorrow 20:00 Forged AMA")
    status, _ = await env.emu.post_raw(body, _headers("not-the-secret", body, int(time.time())))
    await env.settle()
    assert status == 401
    assert await env.core.space_count() == 0
    assert env.emu.api_calls("chat.postEphemeral") == [] and env.said_to(env.host) == []


@pytest.mark.parametrize("headers", [{}, {"X-Slack-Request-Timestamp": "now", "X-Slack-Signature": "v0=00"}])
async def test_missing_or_malformed_signature_headers_get_401(env: SlackEnv, headers: dict[str, str]) -> None:
    body = _command_body(env, "tomorrow 20:00 Forged AMA")
    status, _ = await env.emu.post_raw(body, {"Content-Type": "application/x-www-form-urlencoded", **headers})
    assert status == 401
    assert await env.core.space_count() == 0


async def test_a_request_signed_more_than_5_minutes_ago_gets_401(env: SlackEnv) -> None:
    """A captured request replayed later: correctly signed, but its timestamp is out of the window."""
    body = _command_body(env, "tomorrow 20:00 Replayed AMA")
    status, _ = await env.emu.post_raw(
        body, _headers(env.emu.signing_secret, body, int(time.time()) - 6 * 60)
    )
    await env.settle()
    assert status == 401
    assert await env.core.space_count() == 0


async def test_url_verification_echoes_the_challenge(env: SlackEnv) -> None:
    rec = await env.emu.verify_url()
    assert rec.status == 200
    assert rec.body == {"challenge": rec.payload["challenge"]}


async def test_a_retried_event_is_processed_once(env: SlackEnv) -> None:
    first = await env.emu.open_home(env.host)
    again = await env.emu.retry(first)
    await env.settle()
    assert first.acked and again.acked  # acked both times (Slack would retry a refusal again)
    assert again.sent_headers["X-Slack-Retry-Num"] == "1"
    assert len(env.emu.api_calls("views.publish")) == 1


async def test_a_command_reaching_two_processes_is_acted_on_once(env: SlackEnv) -> None:
    """Behind a load balancer the same signed request may reach two web processes (or one, twice)."""
    rec = await env.command(env.host, "tomorrow 20:00 Once AMA")
    other = handlers_for(env.core, env.emu, env.workspaces)
    # the same request, as the other process gets it: Bolt's own request object straight to its app
    from slack_bolt.request.async_request import AsyncBoltRequest

    response = await other.app.async_dispatch(
        AsyncBoltRequest(body=rec.raw_body.decode(), headers={k: [v] for k, v in rec.sent_headers.items()})
    )
    await other.drain()
    await env.settle()
    assert response.status == 200
    assert await env.core.space_count() == 1
    assert len(env.said_to(env.host)) == 1


async def test_uninstalling_forgets_the_workspace_once(env: SlackEnv) -> None:
    revoked, uninstalled = await env.emu.uninstall(env.team)
    again = await env.emu.retry(uninstalled)
    await env.settle()
    assert revoked.acked and uninstalled.acked and again.acked
    # tokens_revoked and app_uninstalled both forget (either may come first); the retry does nothing
    assert env.workspaces.forgotten == [env.team.id, env.team.id]


def _manifest() -> dict[str, list[str]]:
    """The manifest's keys that matter here: ``key → values`` for ``key: value`` lines and ``- item`` lists
    under a ``key:`` line (PyYAML is not a dependency; the file is plain block-style YAML)."""
    found: dict[str, list[str]] = {}
    key = ""
    for raw in MANIFEST.read_text().splitlines():
        line = raw.split(" #", 1)[0].rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        stripped = line.strip()
        if stripped.startswith("- "):
            item = stripped[2:]
            if ": " in item:  # a list of mappings: "- command: /space" (a scope is "chat:write")
                k, _, v = item.partition(": ")
                found.setdefault(k.strip(), []).append(v.strip().strip('"'))
            else:
                found.setdefault(key, []).append(item.strip('"'))
            continue
        k, _, v = stripped.partition(":")
        key = k.strip()
        if v.strip():
            found.setdefault(key, []).append(v.strip().strip('"'))
    return found


def test_the_manifest_routes_everything_to_the_one_signed_url() -> None:
    manifest = _manifest()
    assert set(manifest["request_url"] + manifest["url"]) == {"https://YOUR-HOST" + EVENTS_PATH}
    assert len(manifest["request_url"]) == 2  # events and interactivity
    assert manifest["command"] == ["/space"]
    assert set(manifest["bot_events"]) == {"app_home_opened", "app_uninstalled", "tokens_revoked"}
    assert manifest["redirect_urls"] == ["https://YOUR-HOST" + REDIRECT_PATH]
    assert manifest["home_tab_enabled"] == ["true"] and manifest["messages_tab_enabled"] == ["true"]
    assert manifest["socket_mode_enabled"] == ["false"]


def test_the_manifest_asks_for_the_scopes_the_install_asks_for() -> None:
    assert sorted(_manifest()["bot"]) == sorted(SCOPES)
