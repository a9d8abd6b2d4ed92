"""Unique jobs' mistakes are refused early: a bad `unique`/`unique_while` when the class is
defined, a bad `unique_key=`/`on_conflict=` at dispatch before any connection is opened, and keys
are derived the same way whatever the field order."""

from __future__ import annotations

from typing import Any, NoReturn

import pytest

from pgqueue import Job, Queue, Settings
from pgqueue.errors import (
    DispatchError,
    InvalidJobSettingError,
    InvalidUniqueOptionError,
    JobDefinitionError,
)
from pgqueue.job import derived_unique_key, hash_unique_key, unique_settings

UNREACHABLE_URL = "postgresql://user:pw@127.0.0.1:1/nodb"


class Order(Job):
    job_name = "tests.unit.unique.Order"
    unique = ("shop", "order_id")

    order_id: int
    shop: str = "main"
    note: str = ""

    def handle(self) -> None:
        pass


class Anything(Job):
    job_name = "tests.unit.unique.Anything"

    n: int = 0

    def handle(self) -> None:
        pass


def _define(**attributes: Any) -> type[Job]:
    return type(
        "Broken",
        (Job,),
        {
            "__annotations__": {"customer_id": int},
            "customer_id": 0,
            "job_name": "tests.unit.unique.Broken",
            "handle": lambda self: None,
            **attributes,
        },
    )


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({"unique": ("nope",)}, "unique names 'nope', which is not a payload field"),
        ({"unique": ("customer",)}, "did you mean 'customer_id'?"),
        ({"unique": "customer_id"}, "(one field is written `('customer_id',)`)"),
        ({"unique": ()}, "unique must be a tuple of payload field names"),
        ({"unique": 1}, "unique must be a tuple of payload field names"),
        ({"unique": (1,)}, "unique names payload fields by name (strings)"),
        ({"unique_while": "running"}, 'unique_while must be "queued"'),
        ({"unique": True, "unique_while": None}, 'unique_while must be "queued"'),
    ],
)
def test_a_bad_unique_setting_is_refused_when_the_class_is_defined(
    attributes: dict[str, Any], message: str
) -> None:
    with pytest.raises(JobDefinitionError) as caught:
        _define(**attributes)
    assert caught.value.args[0].startswith("Broken.")
    assert message in str(caught.value)


def test_a_payload_field_named_unique_is_refused() -> None:
    with pytest.raises(JobDefinitionError, match="reserved for job settings"):
        type(
            "Clash",
            (Job,),
            {"__annotations__": {"unique": bool}, "handle": lambda self: None},
        )


def test_the_key_is_the_named_fields_in_any_order_and_scoped_by_job_name() -> None:
    fields, unique_while = unique_settings(Order)
    assert (fields, unique_while) == (("order_id", "shop"), "queued")
    one = derived_unique_key(Order(order_id=1, note="a"), fields)
    assert one == derived_unique_key(Order(order_id=1, note="b"), fields)
    assert one == '{"order_id":1,"shop":"main"}'
    assert one != derived_unique_key(Order(order_id=2), fields)
    assert hash_unique_key("a.Job", one) != hash_unique_key("b.Job", one)
    assert len(hash_unique_key("a.Job", "x" * 100_000)) == 64


def test_a_unique_setting_reassigned_after_definition_is_refused_at_dispatch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Order, "unique_while", "sometimes")
    with pytest.raises(InvalidJobSettingError, match="reassigned since"):
        unique_settings(Order)


def _refuse_to_connect(*args: object, **kwargs: object) -> NoReturn:
    raise AssertionError("the queue tried to open a database connection")


@pytest.fixture
def queue(monkeypatch: pytest.MonkeyPatch) -> Queue:
    monkeypatch.setattr(Queue, "_get_pool", _refuse_to_connect)
    return Queue(Settings(database_url=UNREACHABLE_URL))


@pytest.mark.parametrize(
    ("job", "options", "message"),
    [
        (Order(order_id=1), {"on_conflict": "update"}, 'on_conflict must be "skip"'),
        (Order(order_id=1), {"on_conflict": None}, 'on_conflict must be "skip"'),
        (Anything(), {"on_conflict": "merge"}, 'on_conflict must be "skip"'),
        (Anything(), {"on_conflict": "replace"}, "Anything is not one: set `unique`"),
        (Anything(), {"unique_key": ""}, "unique_key must be a non-empty string"),
        (Anything(), {"unique_key": 42}, "unique_key must be a non-empty string"),
        (Anything(), {"unique_key": "a\udc80"}, "lone surrogate"),
    ],
)
def test_a_bad_unique_option_is_a_dispatch_error_before_any_sql(
    queue: Queue, job: Job, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidUniqueOptionError) as caught:
        queue.dispatch(job, **options)
    assert isinstance(caught.value, DispatchError)
    assert message in str(caught.value)
