"""Seed a database with one live Space and N due live notices (multi-process tests and benchmarks)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.models import Delivery, DeliveryKind, Space, SpaceStatus
from core.refs import ChatRef, Platform, UserRef
from storage.db import make_engine, make_session_factory
from storage.migrate import upgrade
from storage.stores import unit_of_work_factory

SPACE_ID = "seedspace2"


async def seed_due(url: str, n: int, *, now: datetime | None = None, chunk: int = 5000) -> None:
    await upgrade(url)
    now = now or datetime.now(UTC)
    engine = make_engine(url)
    uow = unit_of_work_factory(make_session_factory(engine))
    try:
        async with uow() as tx:
            await tx.spaces.add(
                Space(
                    id=SPACE_ID,
                    title="Load",
                    host=UserRef(Platform.CONSOLE, "host"),
                    chat=ChatRef(Platform.CONSOLE, "main"),
                    starts_at=now - timedelta(minutes=1),
                    tz="UTC",
                    locale="en",
                    created_at=now - timedelta(hours=1),
                    status=SpaceStatus.LIVE,
                    started_at=now,
                )
            )
            await tx.commit()
        for start in range(0, n, chunk):
            rows = [
                Delivery(
                    key=f"space:{SPACE_ID}:live_notice:console:user:u{i}",
                    kind=DeliveryKind.LIVE_NOTICE,
                    platform=Platform.CONSOLE,
                    recipient=f"console:user:u{i}",
                    space_id=SPACE_ID,
                    revision=1,
                    due_at=now - timedelta(seconds=1),
                )
                for i in range(start, min(n, start + chunk))
            ]
            async with uow() as tx:
                await tx.deliveries.add(rows)
                await tx.commit()
    finally:
        await engine.dispose()
