"""FastAPI: an endpoint that writes a user and dispatches their welcome email in one transaction.

Run from the repository root, against a database where `pgqueue migrate` has run:

    pip install fastapi uvicorn
    export PGQUEUE_DATABASE_URL=postgresql://localhost/myapp
    uvicorn examples.fastapi_app:app
    curl -X POST localhost:8000/signups -H 'content-type: application/json' -d '{"email": "ada@example.com"}'
    pgqueue work --app examples.fastapi_app --queue fastapi --stop-when-empty

The app holds one psycopg pool and one `AsyncQueue` for its lifetime. A signup that fails (the email
is taken) rolls back, so no welcome email is ever sent for a user that does not exist.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from fastapi import FastAPI, HTTPException, Request
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel

from pgqueue import AsyncQueue, Job


class SendWelcomeEmail(Job):
    """Welcome a new user (here: mark them welcomed)."""

    queue = "fastapi"
    job_name = "examples.fastapi_app.SendWelcomeEmail"  # stable across renames and moves

    user_id: int

    async def handle(self) -> None:
        async with await psycopg.AsyncConnection.connect(
            os.environ["PGQUEUE_DATABASE_URL"]
        ) as conn:
            await conn.execute("UPDATE users SET welcomed = true WHERE id = %s", (self.user_id,))


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    url = os.environ["PGQUEUE_DATABASE_URL"]
    async with AsyncConnectionPool(url, open=False) as pool, AsyncQueue() as queue:
        async with pool.connection() as conn:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS users (id bigint GENERATED ALWAYS AS IDENTITY "
                "PRIMARY KEY, email text NOT NULL UNIQUE, welcomed boolean NOT NULL DEFAULT false)"
            )
        app.state.pool, app.state.queue = pool, queue
        yield


app = FastAPI(lifespan=lifespan)


class Signup(BaseModel):
    email: str


class User(BaseModel):
    id: int
    email: str


@app.post("/signups", status_code=201)
async def sign_up(signup: Signup, request: Request) -> User:
    pool: AsyncConnectionPool = request.app.state.pool
    queue: AsyncQueue = request.app.state.queue
    # One transaction: it commits before the response is sent, with both rows or neither.
    async with pool.connection() as conn, conn.transaction():
        try:
            cursor = await conn.execute(
                "INSERT INTO users (email) VALUES (%s) RETURNING id", (signup.email,)
            )
        except psycopg.errors.UniqueViolation:
            raise HTTPException(409, f"{signup.email} has already signed up") from None
        row = await cursor.fetchone()
        assert row is not None
        await queue.dispatch(SendWelcomeEmail(user_id=row[0]), conn=conn)
    return User(id=row[0], email=signup.email)
