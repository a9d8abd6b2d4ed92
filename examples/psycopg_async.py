"""Plain psycopg 3, asyncio: an order and its receipt job, committed together or not at all.

Run from the repository root, against a database where `pgqueue migrate` has run:

    export PGQUEUE_DATABASE_URL=postgresql://localhost/myapp
    python -m examples.psycopg_async  # order 1 and its job commit; order 2 and its job roll back
    pgqueue work --app examples.psycopg_async --queue psycopg-async --stop-when-empty
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

import psycopg

from pgqueue import AsyncQueue, Job


class SendReceipt(Job):
    """Send the receipt of an order (here: mark it sent)."""

    queue = "psycopg-async"
    job_name = "examples.psycopg_async.SendReceipt"  # the same name when run as __main__

    order_id: int

    async def handle(self) -> None:  # async def runs on the worker's event loop
        async with await psycopg.AsyncConnection.connect(
            os.environ["PGQUEUE_DATABASE_URL"]
        ) as conn:
            await conn.execute(
                "UPDATE orders SET receipt_sent = true WHERE id = %s", (self.order_id,)
            )


class PaymentDeclinedError(Exception):
    """The card was declined after the order was written."""


async def place_order(
    conn: psycopg.AsyncConnection[Any], queue: AsyncQueue, item: str, *, paid: bool = True
) -> int:
    """Write the order and dispatch its receipt in one transaction: both commit, or neither."""
    async with conn.transaction():
        cursor = await conn.execute("INSERT INTO orders (item) VALUES (%s) RETURNING id", (item,))
        row = await cursor.fetchone()
        assert row is not None
        order_id: int = row[0]
        await queue.dispatch(SendReceipt(order_id=order_id), conn=conn)
        if not paid:
            raise PaymentDeclinedError(item)  # leaving the block rolls back the order and its job
    return order_id


async def main() -> None:
    url = os.environ["PGQUEUE_DATABASE_URL"]
    async with AsyncQueue() as queue, await psycopg.AsyncConnection.connect(url) as conn:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
            " item text NOT NULL, receipt_sent boolean NOT NULL DEFAULT false)"
        )
        await conn.commit()
        order_id = await place_order(conn, queue, "book")
        print(f"order {order_id} committed with its receipt job")
        with contextlib.suppress(PaymentDeclinedError):
            await place_order(conn, queue, "lamp", paid=False)
        print("the declined order rolled back: no order row, no job")
        print(f"jobs waiting in {SendReceipt.queue!r}: {await queue.size(SendReceipt.queue)}")


if __name__ == "__main__":
    asyncio.run(main())
