"""An exclusive, non-blocking lock on a file, held by one handle at a time."""

import os
from pathlib import Path
from typing import Optional

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: Qdrant Edge's own log lock only
    fcntl = None


class DirectoryLock:
    """``flock`` on ``path``: one holder across threads and processes (each
    :meth:`acquire` opens the file anew, so two handles of one process exclude each other
    too). The kernel drops the lock when the holder dies, so a crash never leaves it taken;
    a handle garbage-collected without :meth:`release` gives it up too.

    Where the lock cannot be taken at all (no ``fcntl``, a read-only directory) acquiring
    succeeds without it: Qdrant Edge's write-ahead log still locks a shard that has one.

    Args:
        path: the lock file (created when first acquired; never deleted).
    """

    def __init__(self, path: "str | os.PathLike[str]"):
        self.path = Path(path)
        self.fd: Optional[int] = None

    @property
    def held(self) -> bool:
        """Whether this handle holds the lock."""
        return self.fd is not None

    def acquire(self) -> bool:
        """Take the lock; ``False`` if another handle holds it. Idempotent."""
        if self.fd is not None or fcntl is None:
            return True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:  # e.g. a read-only directory: nothing can be written there either
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def release(self) -> None:
        """Give the lock up (idempotent)."""
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)

    def __del__(self) -> None:
        # an index dropped without close(): free the lock as the shard's own handle does
        self.release()
