"""An exclusive lock per batch run (and per output file), so that two identical commands
started together do not both run and both write the same output.

The lock is ``flock`` on a small file under the store's folder: the kernel releases it
when its process ends, even by ``kill -9``, so a crashed run never leaves a stale lock
(only an unlocked file, reused by the next run).  A run removes its files when it ends.
(On systems without ``fcntl`` an ``O_EXCL`` file is used, and a stale one names its PID.)
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from types import TracebackType

from ..errors import OpenAutoGLMError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (a releasing holder unlinks it)."""
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


class RunLocked(OpenAutoGLMError):
    """Another process is running the same run (or writing the same output file)."""


class RunLock:
    """Hold exclusive locks named ``names`` (e.g. the run id and the output path) in ``folder``."""

    def __init__(self, folder: Path, names: list[str], what: str) -> None:
        self.folder = folder
        self.what = what
        self.paths = [folder / (hashlib.sha256(n.encode("utf-8")).hexdigest()[:24] + ".lock") for n in names]
        self._handles: list[int] = []

    def acquire(self) -> "RunLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            for path in self.paths:
                self._handles.append(self._lock(path))
        except BaseException:
            self.release()
            raise
        return self

    def _lock(self, path: Path) -> int:
        if fcntl is None:  # pragma: no cover - Windows
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR)
            except FileExistsError:
                raise self._busy(path) from None
        else:
            while True:
                fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    raise self._busy(path) from None
                if _same_file(fd, path):
                    break
                os.close(fd)  # the holder removed the file as we opened it: lock the new one
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {time.time():.0f}\n".encode())
        return fd

    def _busy(self, path: Path) -> RunLocked:
        try:
            pid = path.read_text().split()[0]
        except (OSError, IndexError):
            pid = "another process"
        return RunLocked(
            f"{self.what} is already running (process {pid})",
            hint="wait for it to finish (rerunning the same command afterwards resumes it), "
                 "or write to another --output / --run-id",
        )

    def release(self) -> None:
        for fd, path in zip(self._handles, self.paths):
            if fcntl is None:  # pragma: no cover - Windows
                os.close(fd)
                path.unlink(missing_ok=True)
            else:  # remove the file while still holding it (see _same_file), then let go
                path.unlink(missing_ok=True)
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
        self._handles.clear()

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
