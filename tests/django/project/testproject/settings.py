"""A small Django project using pgqueue as its task backend (tests/django).

The database comes from TESTPROJECT_DATABASE_URL (a libpq URL or conninfo string): each test
points it at its own migrated database.
"""

import os

from psycopg.conninfo import conninfo_to_dict

_database = conninfo_to_dict(os.environ.get("TESTPROJECT_DATABASE_URL", "dbname=testproject"))

SECRET_KEY = "tests-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost"]
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ROOT_URLCONF = "testproject.urls"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "pgqueue.contrib.django",
    "shop",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _database.pop("dbname", ""),
        "USER": _database.pop("user", ""),
        "PASSWORD": _database.pop("password", ""),
        "HOST": _database.pop("host", ""),
        "PORT": _database.pop("port", ""),
        "OPTIONS": _database,
    }
}
TASKS = {
    "default": {
        "BACKEND": "pgqueue.contrib.django.PgQueueBackend",
        "QUEUES": ["default", "emails"],
    },
    # A second pgqueue backend with options of its own: its tasks are jobs of another type.
    "reports": {
        "BACKEND": "pgqueue.contrib.django.PgQueueBackend",
        "QUEUES": ["reports"],
        "OPTIONS": {"KEEP_RESULT": "2h", "MAX_TRIES": 1, "TIMEOUT": 5},
    },
}
