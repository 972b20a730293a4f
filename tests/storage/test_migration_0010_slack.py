"""0010_slack from 0009 on SQLite and PostgreSQL: slack_sdk's own installation store (the real
AsyncSQLAlchemyInstallationStore, as bots/slack/workspaces.py uses it) works on the tables the migration wrote
out, and the one-time codes table is there; downgrade removes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from slack_sdk.oauth.installation_store.models.installation import Installation
from slack_sdk.oauth.installation_store.sqlalchemy import AsyncSQLAlchemyInstallationStore

from storage.codes import SqlOneTimeCodes
from storage.db import make_engine
from storage.migrate import current, downgrade, head, upgrade


async def test_from_0009_the_installation_store_and_codes_work(db_url: str) -> None:
    await upgrade(db_url, "0009_audio")
    await upgrade(db_url)
    assert await current(db_url) == head()
    engine = make_engine(db_url)
    try:
        store = AsyncSQLAlchemyInstallationStore(client_id="1111.2222", engine=engine)
        for team, token in (("T1", "xoxb-old"), ("T1", "xoxb-new"), ("T2", "xoxb-other")):
            await store.async_save(
                Installation(
                    app_id="A1",
                    team_id=team,
                    bot_token=token,
                    bot_id="B1",
                    bot_user_id="U0BOT",
                    user_id="U1",
                    installed_at=datetime.now(UTC).timestamp(),
                )
            )
        bot = await store.async_find_bot(enterprise_id=None, team_id="T1")
        assert bot is not None and bot.bot_token == "xoxb-new"  # the latest install wins
        await store.async_delete_bot(enterprise_id=None, team_id="T1")
        await store.async_delete_installation(enterprise_id=None, team_id="T1")
        assert await store.async_find_bot(enterprise_id=None, team_id="T1") is None
        assert await store.async_find_installation(enterprise_id=None, team_id="T1") is None
        assert await store.async_find_bot(enterprise_id=None, team_id="T2") is not None

        codes = SqlOneTimeCodes(engine)
        now = datetime(2026, 12, 7, tzinfo=UTC)
        code = await codes.issue("slack-oauth", now=now, ttl=timedelta(minutes=10))
        assert await codes.consume("slack-oauth", code, now=now)
    finally:
        await engine.dispose()
    await downgrade(db_url, "0009_audio")
    assert await current(db_url) == "0009_audio"
    await upgrade(db_url)
