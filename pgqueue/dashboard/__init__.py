"""pgqueue's web dashboard: queues, jobs, failed jobs, workers, schedules and health, live.

`create_app` returns an ASGI app to serve on its own (`pgqueue dashboard`) or to mount under a
prefix in FastAPI, Starlette or Django's ASGI handler (docs/dashboard.md). It needs the
`dashboard` extra: `pip install 'pgqueue[dashboard]'` (Starlette, Jinja2, python-multipart, and
uvicorn for the command).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgqueue.settings import Settings

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from pgqueue.dashboard.app import Authorize

__all__ = ["create_app"]


def create_app(
    settings: Settings | None = None,
    allow_actions: bool = False,
    authorize: Authorize | None = None,
) -> Starlette:
    """The dashboard as an ASGI (Starlette) app.

    Parameters:
        settings: the database and schema to show; read from the environment when None.
        allow_actions: offer retry and forget (failed jobs, one or many), pause and resume (a
            queue) and cancel (a job). Off by default: the pages then have no action forms and
            every POST answers 403.
        authorize: `authorize(request, action) -> bool`, plain or async, asked before each
            action runs with its name (`retry`, `forget`, `pause`, `resume`, `cancel`) and the
            Starlette request; False answers 403. Viewing is not asked about: protect the pages
            with the host application's authentication or a reverse proxy.

    Every action is a POST carrying a CSRF token, and every page and asset comes from the app
    itself. The database password is never shown (the URL is shown redacted).
    """
    from pgqueue.dashboard.app import build_app

    return build_app(
        settings if settings is not None else Settings(),
        allow_actions=allow_actions,
        authorize=authorize,
    )
