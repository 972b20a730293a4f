"""The composition root gives the Discord adapter its interaction handlers and, with DISCORD_PUBLIC_KEY,
the HTTP interactions endpoint on the web app (only where the process receives)."""

from __future__ import annotations

from pathlib import Path

import pytest
from nacl.signing import SigningKey

from bots.app import AdapterContext, _discord
from bots.discord.handlers import Handlers
from bots.discord.interactions import PATH
from config.settings import Settings
from tests.fakes.clock import FakeClock


class Nothing:  # the adapter is only built here, never started: nothing of these is used
    def __getattr__(self, name: str) -> object:
        raise AssertionError(name)


def _platform(tmp_path: Path, *, receive: bool, public_key: str | None) -> object:
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'spaces.db'}",
        "SPACES_WORKER_ID": "wire-1",
        "PORT": "0",
        "DISCORD_BOT_TOKEN": "MTAwMDAwMDAwMDAwMDAwMDAx.emulator.token-for-spaces-tests",
        "DISCORD_APPLICATION_ID": "100000000000000001",
    }
    if public_key:
        env["DISCORD_PUBLIC_KEY"] = public_key
    ctx = AdapterContext(
        Settings.from_env(env),
        Nothing(),
        Nothing(),
        FakeClock(),
        Nothing(),
        receive=receive,
        replies=Nothing(),
    )  # type: ignore[arg-type]
    return _discord(ctx)


@pytest.mark.parametrize(
    ("receive", "with_key", "routes"), [(True, True, 1), (True, False, 0), (False, True, 0)]
)
def test_handlers_attached_and_the_endpoint_only_where_it_receives(
    tmp_path: Path, receive: bool, with_key: bool, routes: int
) -> None:
    key = SigningKey.generate().verify_key.encode().hex() if with_key else None
    platform = _platform(tmp_path, receive=receive, public_key=key)
    assert isinstance(platform._handlers, Handlers)  # type: ignore[attr-defined]
    served = list(platform.web_routes())  # type: ignore[attr-defined]
    assert [(m, p) for m, p, _ in served] == [("POST", PATH)] * routes


@pytest.mark.parametrize("bad", ["not-hex", "abcd", "00" * 31])
def test_a_wrong_public_key_is_refused_at_start_with_the_variable_named(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="DISCORD_PUBLIC_KEY"):
        _platform(tmp_path, receive=True, public_key=bad)
