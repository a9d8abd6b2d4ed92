"""The shop's tasks: what the tests enqueue and a real worker runs."""

from __future__ import annotations

import asyncio
from typing import Any

from django.db import transaction

try:
    from django.tasks import task
except ImportError:  # Django 5.2: the django-tasks backport
    from django_tasks import task

from shop.models import Order


class PaymentDeclinedError(Exception):
    """The card was declined."""


@task
def confirm_order(order_id: int) -> dict[str, Any]:
    """Mark the order confirmed and return what the worker saw."""
    order = Order.objects.get(pk=order_id)
    order.confirmed = True
    order.log = [*order.log, "confirm_order"]
    order.save()
    return {"order": order_id, "customer": order.customer}


@task(queue_name="emails", priority=10)
def email_receipt(order_id: int, *, subject: str = "Your receipt") -> str:
    return f"{subject} for order {order_id}"


@task
def log_step(order_id: int, step: str) -> None:
    """Append `step` to the order's log: the tests read the order tasks ran in."""
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order_id)
        order.log = [*order.log, step]
        order.save()


@task
def charge_card(order_id: int) -> None:
    raise PaymentDeclinedError(f"card declined for order {order_id}")


@task(takes_context=True)
def which_attempt(context: Any, label: str) -> dict[str, Any]:
    return {"label": label, "attempt": context.attempt, "id": context.task_result.id}


@task
async def async_total(prices: list[int]) -> int:
    await asyncio.sleep(0)
    orders = await Order.objects.acount()
    return sum(prices) + orders


@task
def unserialisable_result() -> object:
    return object()


@task(backend="reports", queue_name="reports")
def build_report(name: str) -> str:
    return f"report {name}"
