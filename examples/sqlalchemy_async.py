"""SQLAlchemy ORM, `AsyncSession`: an order and its receipt job in one transaction.

Run from the repository root, against a database where `pgqueue migrate` has run:

    export PGQUEUE_DATABASE_URL=postgresql://localhost/myapp
    python -m examples.sqlalchemy_async  # order 1 and its job commit; order 2 and its job roll back
    pgqueue work --app examples.sqlalchemy_async --queue sqlalchemy-async --stop-when-empty

The engine must use the psycopg driver (`postgresql+psycopg://`, which is async-capable). pgqueue
writes through the session's connection and never commits it: `session.begin()` does.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import psycopg
from sqlalchemy import false, update
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from pgqueue import AsyncQueue, Job


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    item: Mapped[str]
    receipt_sent: Mapped[bool] = mapped_column(server_default=false())


async def _connect() -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(os.environ["PGQUEUE_DATABASE_URL"])


# In an app: create_async_engine("postgresql+psycopg://user:password@host/myapp"). Here the
# engine reuses PGQUEUE_DATABASE_URL (a URL or a conninfo string), read when a connection is opened.
engine = create_async_engine("postgresql+psycopg://", async_creator=_connect)


class SendReceipt(Job):
    """Send the receipt of an order (here: mark it sent)."""

    queue = "sqlalchemy-async"
    job_name = "examples.sqlalchemy_async.SendReceipt"  # the same name when run as __main__

    order_id: int

    async def handle(self) -> None:  # async def runs on the worker's event loop
        async with AsyncSession(engine) as session, session.begin():
            await session.execute(
                update(Order).where(Order.id == self.order_id).values(receipt_sent=True)
            )


async def place_order(session: AsyncSession, queue: AsyncQueue, item: str) -> int:
    """Add the order and dispatch its receipt in the session's current transaction."""
    order = Order(item=item)
    session.add(order)
    await session.flush()  # INSERT now, so the order has its id
    await queue.dispatch(SendReceipt(order_id=order.id), conn=session)
    return order.id


async def main() -> None:
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    async with AsyncQueue() as queue:
        async with AsyncSession(engine) as session, session.begin():  # commits both on success
            order_id = await place_order(session, queue, "book")
        print(f"order {order_id} committed with its receipt job")

        async with AsyncSession(engine) as session:
            await place_order(session, queue, "lamp")
            await session.rollback()  # say the payment was declined: the order and its job are gone
        print("the declined order rolled back: no order row, no job")
        print(f"jobs waiting in {SendReceipt.queue!r}: {await queue.size(SendReceipt.queue)}")
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
