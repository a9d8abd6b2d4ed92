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
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.django.django_project import PROJECT

SETTINGS_MODULE = "testproject.settings"


@pytest.fixture(scope="session", autouse=True)
def django_project() -> Iterator[None]:
    """Django configured with the project's settings while this directory's tests run."""
    sys.path.insert(0, str(PROJECT))
    import django
    from django.conf import settings
    from django.test.utils import override_settings

    values = {
        name: value
        for name, value in vars(importlib.import_module(SETTINGS_MODULE)).items()
        if name.isupper()
    }
    configured_here = not settings.configured
    if configured_here:
        settings.configure(**values)
        django.setup()
        yield
        # Unconfigured again, so a later test may configure a Django of its own.
        from django.utils.functional import empty

        settings._wrapped = empty
    else:  # another test configured Django first: lay the project's settings over it
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Overriding setting DATABASES can lead to ..."
            override = override_settings(**values)
            override.enable()
        try:
            yield
        finally:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                override.disable()
    sys.path.remove(str(PROJECT))


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
