"""Plain psycopg 3: an order and its receipt job, committed together or not at all.

Run from the repository root, against a database where `pgqueue migrate` has run:

    export PGQUEUE_DATABASE_URL=postgresql://localhost/myapp
    python -m examples.psycopg_sync  # order 1 and its job commit; order 2 and its job roll back
    pgqueue work --app examples.psycopg_sync --queue psycopg-sync --stop-when-empty
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import psycopg

from pgqueue import Job, Queue


class SendReceipt(Job):
    """Send the receipt of an order (here: mark it sent)."""

    queue = "psycopg-sync"
    # A stable stored name: the same whether this file runs as __main__ or a worker imports it,
    # and it keeps queued rows valid if the class moves.
    job_name = "examples.psycopg_sync.SendReceipt"

    order_id: int

    def handle(self) -> None:  # a plain def runs in a worker child process: blocking is fine
        with psycopg.connect(os.environ["PGQUEUE_DATABASE_URL"]) as conn:
            conn.execute("UPDATE orders SET receipt_sent = true WHERE id = %s", (self.order_id,))


class PaymentDeclinedError(Exception):
    """The card was declined after the order was written."""


def place_order(
    conn: psycopg.Connection[Any], queue: Queue, item: str, *, paid: bool = True
) -> int:
    """Write the order and dispatch its receipt in one transaction: both commit, or neither."""
    with conn.transaction():
        row = conn.execute("INSERT INTO orders (item) VALUES (%s) RETURNING id", (item,)).fetchone()
        assert row is not None
        order_id: int = row[0]
        queue.dispatch(SendReceipt(order_id=order_id), conn=conn)
        if not paid:
            raise PaymentDeclinedError(item)  # leaving the block rolls back the order and its job
    return order_id


def main() -> None:
    with Queue() as queue, psycopg.connect(os.environ["PGQUEUE_DATABASE_URL"]) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
            " item text NOT NULL, receipt_sent boolean NOT NULL DEFAULT false)"
        )
        conn.commit()
        order_id = place_order(conn, queue, "book")
        print(f"order {order_id} committed with its receipt job")
        with contextlib.suppress(PaymentDeclinedError):
            place_order(conn, queue, "lamp", paid=False)
        print("the declined order rolled back: no order row, no job")
        print(f"jobs waiting in {SendReceipt.queue!r}: {queue.size(SendReceipt.queue)}")


if __name__ == "__main__":
    main()
