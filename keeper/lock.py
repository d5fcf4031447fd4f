"""One running keeper per journal and per sending account: OS file locks.

Two daemons on one journal and account both claim, sign and send: their nonces collide
("nonce too low") and they liquidate the same positions twice (one reverts). `keeper run`
therefore holds an exclusive `flock` on `<journal>.lock`, beside the SQLite journal, and
on a per-account lock file (`account-<chain id>-<address>.lock` in the user's runtime
directory) while it runs; each file holds the holder's pid. A second keeper exits with one
line naming that pid. The kernel drops a lock when its holder dies, however it dies, so
a crash never leaves a stale lock behind (the pid written in the file is only for the
message). Replicas behind a leader lease replace this later (docs/operations.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from pathlib import Path
from types import TracebackType

from keeper.errors import FatalError


class AlreadyRunning(FatalError):
    """Another keeper holds the journal's or the account's lock."""


class FileLock:
    """An exclusive, non-blocking `flock` on `path`, released by `release` (or on exit)."""

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> FileLock:
        """Take the lock, or raise `AlreadyRunning` naming the holder's pid."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder is not None else "another process"
            raise AlreadyRunning(
                f"{self.what} is in use by another keeper ({who}; lock {self.path}): "
                "stop it first, or give this one its own journal and account"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            # Truncate first: a reader between unlock and close must not name our pid.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
        return int(text) if text else None
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def journal_lock(journal: Path) -> FileLock:
    """The lock beside `journal` (keeper-journal.sqlite -> keeper-journal.sqlite.lock)."""
    return FileLock(journal.with_name(journal.name + ".lock"), f"journal {journal}")


def lock_dir() -> Path:
    """Where account locks live: $XDG_RUNTIME_DIR/keeper, else a per-user temp directory."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "keeper"
    return Path(tempfile.gettempdir()) / f"keeper-{os.getuid()}"


def account_lock(chain_id: int, address: str, directory: Path | None = None) -> FileLock:
    """The lock of one sending account on one chain (its nonces are shared by every sender)."""
    where = lock_dir() if directory is None else directory
    return FileLock(where / f"account-{chain_id}-{address.lower()}.lock",
                    f"account {address} on chain {chain_id}")
