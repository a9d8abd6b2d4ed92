"""Worker configuration flows one way: Settings -> WorkerOptions, each default written once."""

from __future__ import annotations

from pgqueue.settings import Settings
from pgqueue.worker import WorkerOptions

SHARED = ("concurrency", "sleep", "max_jobs", "max_time", "max_tries", "timeout", "grace", "lease")


def test_worker_options_defaults_are_the_settings_defaults() -> None:
    options, settings = WorkerOptions(), Settings(_env_file=None)
    for name in SHARED:
        assert getattr(options, name) == getattr(settings, name), name
    assert list(options.queues) == settings.queue
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
