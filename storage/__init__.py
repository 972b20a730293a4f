"""Persistence for Spaces: the core's ports on SQLModel/SQLAlchemy (SQLite by default, PostgreSQL by URL).

The composition root builds, once, at start-up::

    engine = make_engine(settings.database_url)          # storage.db
    await upgrade(settings.database_url)                 # storage.migrate (or `alembic upgrade head`)
    sessions = make_session_factory(engine)
    uow_factory = unit_of_work_factory(sessions)          # -> core.ports.UnitOfWorkFactory
    outbox = SqlOutbox(engine)                            # -> core.ports.Outbox
    heartbeats = SqlHeartbeats(engine)
"""
