"""One owner per run directory. A driver holds an exclusive lock on ``<run_dir>/.lock`` (fcntl.flock)
for its whole run, and writes its host, pid and start time into the file. A second driver on the
same directory is refused (exit 2) with the owner's identity. The kernel releases the lock when the
owner's process ends in any way (kill -9 included), so a dead owner's lock is never stale. (Some
network filesystems do not support flock; there the lock is refused with a clear error rather
than silently not held.)"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from plumbing.errors import UsageError

LOCK_NAME = ".lock"


class RunDirInUseError(UsageError):
    """Another live driver owns the run directory."""


class RunDirLock:
    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_NAME
        self._file = None

    def acquire(self) -> "RunDirLock":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = self.path.open("a+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            owner = _parse(f.read())
            f.close()
            raise RunDirInUseError(
                f"run dir {self.path.parent} is in use by the driver with pid {owner.get('pid', '?')} on "
                f"{owner.get('host', '?')} (started {owner.get('started', '?')}); wait for it to end or use another "
                "--run-dir"
            ) from None
        except OSError as err:
            f.close()
            raise UsageError(
                f"run dir {self.path.parent}: cannot lock {self.path} ({err.strerror}); use a local or flock-capable "
                "filesystem"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(
            json.dumps(
                {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
            )
        )
        f.flush()
        self._file = f
        return self

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor releases the lock
            self._file = None


def _parse(text: str) -> dict:
    try:
        owner = json.loads(text)
    except ValueError:
        return {}
    return owner if isinstance(owner, dict) else {}
