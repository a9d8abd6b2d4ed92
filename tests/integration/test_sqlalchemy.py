"""Dispatch through SQLAlchemy sessions and connections on the psycopg driver."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from pgqueue import AsyncQueue, Job, Queue, Settings
from pgqueue.errors import UnsupportedConnectionError


class Welcome(Job):
    job_name = "tests.sqlalchemy.Welcome"

    user_id: int

    def handle(self) -> None:
        pass


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(database_url))
    with engine.begin() as setup:
        setup.execute(text("CREATE TABLE users (id int PRIMARY KEY)"))
    yield engine
    engine.dispose()


@pytest.fixture
async def async_engine(database_url: str, engine: Engine) -> Any:
    async def connect() -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(database_url)

    engine_ = create_async_engine("postgresql+psycopg://", async_creator=connect)
    yield engine_
    await engine_.dispose()


def _counts(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    users = conn.execute("SELECT count(*) FROM users").fetchone()
    jobs = conn.execute("SELECT count(*) FROM pgqueue.jobs").fetchone()
    assert users is not None and jobs is not None
    return users[0], jobs[0]


def test_session_commit_keeps_the_row_and_the_job(
    engine: Engine, settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    queue = Queue(settings)
    with Session(engine) as session, session.begin():
        session.execute(text("INSERT INTO users VALUES (1)"))
        queue.dispatch(Welcome(user_id=1), conn=session)
    assert _counts(conn) == (1, 1)


def test_session_rollback_drops_the_row_and_the_job(
    engine: Engine, settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    queue = Queue(settings)
    with Session(engine) as session:
        session.execute(text("INSERT INTO users VALUES (1)"))
        queue.bulk([Welcome(user_id=1), Welcome(user_id=2)], conn=session)
        session.rollback()
    assert _counts(conn) == (0, 0)


def test_core_connection_shares_the_transaction(
    engine: Engine, settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    queue = Queue(settings)
    with engine.connect() as connection:
        connection.execute(text("INSERT INTO users VALUES (2)"))
        queue.dispatch(Welcome(user_id=2), conn=connection)
        connection.rollback()
        connection.execute(text("INSERT INTO users VALUES (3)"))
        queue.dispatch(Welcome(user_id=3), conn=connection)
        connection.commit()
    assert _counts(conn) == (1, 1)


async def test_async_session_commit_and_rollback(
    async_engine: AsyncEngine, settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    queue = AsyncQueue(settings)
    async with AsyncSession(async_engine) as session:
        await session.execute(text("INSERT INTO users VALUES (1)"))
        await queue.dispatch(Welcome(user_id=1), conn=session)
        await session.rollback()
    assert _counts(conn) == (0, 0)
    async with AsyncSession(async_engine) as session, session.begin():
        await session.execute(text("INSERT INTO users VALUES (2)"))
        await queue.dispatch(Welcome(user_id=2), conn=session)
    assert _counts(conn) == (1, 1)


def test_a_non_psycopg_driver_is_refused(settings: Settings) -> None:
    engine = create_engine("sqlite://")
    with Session(engine) as session, pytest.raises(UnsupportedConnectionError, match="psycopg"):
        Queue(settings).dispatch(Welcome(user_id=1), conn=session)
    engine.dispose()
