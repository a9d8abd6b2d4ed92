"""A real Django project (tests/django/project) on the suite's PostgreSQL.

pytest-django is not used: it configures Django for the whole pytest session from one settings
module and builds its test database with Django's migrations, while these tests need each test's
own pgqueue-migrated database from pgqueue's plugin (`database_url`), and the rest of the suite
needs Django left unconfigured (tests/integration mounts the dashboard beside a Django of its own).
So the project's settings are applied for this directory's tests only, each test points Django's
connection at its database and runs Django's `migrate` there (auth, admin, sessions, the shop's
table), and the worker runs as a real `manage.py pgqueue_work` process.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.django.django_project import PROJECT

SETTINGS_MODULE = "testproject.settings"
HERE = Path(__file__).parent


# How to put Django back as it was once this directory's tests are done (see django_project).
_undo: list[Callable[[], None]] = []


@pytest.fixture(autouse=True)
def django_project() -> None:
    """Django configured with the project's settings for each test of this directory."""
    if not _undo:
        _configure()


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """After the last test of this directory in a row, Django is put back as it was."""
    if nextitem is None or HERE not in nextitem.path.parents:
        while _undo:
            _undo.pop()()


def _configure() -> None:
    import django
    from django.conf import settings
    from django.test.utils import override_settings

    sys.path.insert(0, str(PROJECT))
    _undo.append(lambda: sys.path.remove(str(PROJECT)))
    values = {
        name: value
        for name, value in vars(importlib.import_module(SETTINGS_MODULE)).items()
        if name.isupper()
    }
    if not settings.configured:
        settings.configure(**values)
        django.setup()
        # Unconfigured again afterwards, so a later test may configure a Django of its own.
        _undo.append(_unconfigure)
    else:  # another test configured Django first: lay the project's settings over it
        override = override_settings(**values)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Overriding setting DATABASES can lead to ..."
            override.enable()
        _forget_connections()
        _undo.append(lambda: (override.disable(), _forget_connections()))


def _unconfigure() -> None:
    from django.conf import settings
    from django.utils.functional import empty

    _forget_connections()
    settings._wrapped = empty


def _forget_connections() -> None:
    """Close Django's connections and drop what its handlers read from DATABASES and TASKS, so
    the next use builds them from the settings in force."""
    from asgiref.local import Local
    from django.db import connections

    from pgqueue.contrib.django.compat import task_backends

    connections.close_all()
    for handler in (connections, task_backends):
        handler._settings = None
        handler.__dict__.pop("settings", None)
        handler._connections = Local(handler.thread_critical)


def use_database(url: str) -> None:
    """Point Django's default connection at the database `url` names."""
    from django.db import connections

    params: dict[str, Any] = conninfo_to_dict(url)
    connections.close_all()
    connections["default"].settings_dict.update(
        NAME=params.pop("dbname", ""),
        USER=params.pop("user", ""),
        PASSWORD=params.pop("password", ""),
        HOST=params.pop("host", ""),
        PORT=params.pop("port", ""),
        OPTIONS=params,
    )


@pytest.fixture
def django_db(database_url: str) -> Iterator[str]:
    """Django's default connection on this test's database, with Django's tables migrated."""
    from django.core.management import call_command
    from django.db import connections

    use_database(database_url)
    call_command("migrate", run_syncdb=True, verbosity=0)
    yield database_url
    connections.close_all()


@pytest.fixture(autouse=True)
def no_pgqueue_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No PGQUEUE_* variable of the machine's: the commands connect where Django's DATABASES say."""
    import os

    for name in list(os.environ):
        if name.startswith("PGQUEUE_"):
            monkeypatch.delenv(name)
