"""Worker configuration flows one way: Settings -> WorkerOptions, each default written once."""

from __future__ import annotations

import pytest

from pgqueue import Job
from pgqueue.settings import Settings
from pgqueue.worker import WorkerOptions, default_queues


class SendsNewsletter(Job):
    queue = "unit-newsletters"

    async def handle(self) -> None:
        pass


class SendsInvoice(Job):
    queue = "unit-invoices"

    async def handle(self) -> None:
        pass


SHARED = ("concurrency", "sleep", "max_jobs", "max_time", "max_tries", "timeout", "grace", "lease")


def test_worker_options_defaults_are_the_settings_defaults() -> None:
    options, settings = WorkerOptions(), Settings(_env_file=None)
    for name in SHARED:
        assert getattr(options, name) == getattr(settings, name), name
    assert settings.queue is None  # unset: from_settings serves the declared queues
    assert list(options.queues) == ["default"]
    assert options.rescue_interval == settings.rescue_interval
    assert options.cleanup_interval == settings.cleanup_interval


def test_from_settings_carries_every_setting_and_the_extra_options() -> None:
    settings = Settings(
        _env_file=None,
        queue=["a", "b"],
        concurrency=7,
        sleep=0.5,
        lease=12,
        grace=3,
        imports=["myapp.jobs"],
        cleanup_interval=60,
    )
    options = WorkerOptions.from_settings(settings, stop_when_empty=True, metrics_port=9100)
    assert list(options.queues) == ["a", "b"]
    assert (options.concurrency, options.sleep, options.lease, options.grace) == (7, 0.5, 12, 3)
    assert list(options.imports) == ["myapp.jobs"]
    assert (options.cleanup_interval, options.stop_when_empty, options.metrics_port) == (
        60,
        True,
        9100,
    )


def test_without_a_queue_setting_a_worker_serves_the_declared_queues_then_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PGQUEUE_QUEUE", raising=False)
    queues = list(WorkerOptions.from_settings(Settings(_env_file=None)).queues)
    assert queues == list(default_queues())
    assert queues.index("unit-newsletters") < queues.index("unit-invoices")  # definition order
    assert queues.count("default") == 1


@pytest.mark.parametrize("value", ["default", "unit-invoices,default"])
def test_a_queue_setting_wins_over_the_declared_queues(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("PGQUEUE_QUEUE", value)
    options = WorkerOptions.from_settings(Settings(_env_file=None))
    assert list(options.queues) == value.split(",")


def test_an_empty_queue_setting_is_refused_not_read_as_unset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PGQUEUE_QUEUE", " , ")
    with pytest.raises(ValueError, match="no queue name given"):
        Settings(_env_file=None)
