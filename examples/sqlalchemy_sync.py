"""SQLAlchemy ORM, sync `Session`: an order and its receipt job in one transaction.

Run from the repository root, against a database where `pgqueue migrate` has run:

    export PGQUEUE_DATABASE_URL=postgresql://localhost/myapp
    python -m examples.sqlalchemy_sync  # order 1 and its job commit; order 2 and its job roll back
    pgqueue work --app examples.sqlalchemy_sync --queue sqlalchemy-sync --stop-when-empty

The engine must use the psycopg driver (`postgresql+psycopg://`). pgqueue writes through the
session's connection and never commits it: `session.begin()` does.
"""

from __future__ import annotations

import os

import psycopg
from sqlalchemy import create_engine, false, update
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from pgqueue import Job, Queue


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    item: Mapped[str]
    receipt_sent: Mapped[bool] = mapped_column(server_default=false())


# In an app: create_engine("postgresql+psycopg://user:password@host/myapp"). Here the engine
# reuses PGQUEUE_DATABASE_URL (a URL or a conninfo string), read when a connection is opened.
engine = create_engine(
    "postgresql+psycopg://",
    creator=lambda: psycopg.connect(os.environ["PGQUEUE_DATABASE_URL"]),
)


class SendReceipt(Job):
    """Send the receipt of an order (here: mark it sent)."""

    queue = "sqlalchemy-sync"
    job_name = "examples.sqlalchemy_sync.SendReceipt"  # the same name when run as __main__

    order_id: int

    def handle(self) -> None:  # a plain def runs in a worker child process: blocking is fine
        with Session(engine) as session, session.begin():
            session.execute(
                update(Order).where(Order.id == self.order_id).values(receipt_sent=True)
            )


def place_order(session: Session, queue: Queue, item: str) -> int:
    """Add the order and dispatch its receipt in the session's current transaction."""
    order = Order(item=item)
    session.add(order)
    session.flush()  # INSERT now, so the order has its id
    queue.dispatch(SendReceipt(order_id=order.id), conn=session)
    return order.id


def main() -> None:
    Base.metadata.create_all(engine)
    with Queue() as queue:
        with Session(engine) as session, session.begin():  # commits both on success
            order_id = place_order(session, queue, "book")
        print(f"order {order_id} committed with its receipt job")

        with Session(engine) as session:
            place_order(session, queue, "lamp")
            session.rollback()  # say the payment was declined: the order and its job are gone
        print("the declined order rolled back: no order row, no job")
        print(f"jobs waiting in {SendReceipt.queue!r}: {queue.size(SendReceipt.queue)}")


if __name__ == "__main__":
    main()
