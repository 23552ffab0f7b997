"""What the cache owns inside ``save_dir``: checks made before the fill, the owner mark and
the lock that keeps two jobs from writing one cache at once.

The cache only ever creates, replaces or deletes the names of its layout (:data:`OWN_NAMES`,
``.gen-*`` generations and their temporary links). It uses a directory that is new, empty,
marked as a cache (:data:`MARK`) or laid out as a cache this project wrote before the mark
existed (manifest v3 generations), other caches nested in it allowed; any other non-empty
directory is refused before the fill, so files a user keeps there are never deleted or
replaced.
"""

import contextlib
import errno
import fcntl
import itertools
import logging
import os
import secrets
import socket
import time
import weakref
from typing import Callable, Iterator, List, Optional

MARK = ".quaterion-cache"
LOCK = ".quaterion-cache.lock"
CURRENT = "current"
FILL = ".fill"  # DISK fill files, while a fill runs
LAYOUT = ("encoders", "manifest.json", "train_labels", "val_labels")
OWN_NAMES = (MARK, LOCK, CURRENT, FILL) + LAYOUT
GENERATION_PREFIX = ".gen-"
logger = logging.getLogger(__name__)
LOCK_WAIT_S = 10.0  # how long a run waits for another process's lock before it gives up
_HELD: "weakref.WeakSet[SaveDirLock]" = weakref.WeakSet()  # locks this process holds now


class CacheDirInUseError(RuntimeError):
    """Another process holds the lock of a cache's ``save_dir``."""


def _ours(root: str, entry: str) -> bool:
    """Whether ``entry`` of ``root`` is a name the cache creates, in the form it creates it."""
    path = os.path.join(root, entry)
    if entry in LAYOUT:  # always a link through ``current``
        return os.path.islink(path) and os.readlink(path) == os.path.join(CURRENT, entry)
    if entry == CURRENT:
        return os.path.islink(path) and os.readlink(path).startswith(GENERATION_PREFIX)
    if entry in OWN_NAMES:  # the mark, the lock and ``.fill`` are written through: no links
        return not os.path.islink(path)
    if entry.startswith(GENERATION_PREFIX):
        return os.path.isdir(path) and not os.path.islink(path)
    if os.path.isfile(os.path.join(path, MARK)):  # another cache, nested (never touched)
        return True
    return any(entry.startswith(f"{name}.tmp-") for name in OWN_NAMES)


def foreign_entries(root: str) -> List[str]:
    """Entries of ``root`` the cache did not create (all of them count in a directory without
    the mark, only misshapen layout names in a marked one)."""
    entries = sorted(os.listdir(root))
    checked = [entry for entry in entries if entry in OWN_NAMES] if MARK in entries else entries
    return [entry for entry in checked if not _ours(root, entry)]


def prepare(save_dir: str) -> str:
    """Check ``save_dir`` before anything is encoded; returns its resolved path.

    It is created if missing; ``~`` is expanded and a symlink followed. Raises
    ``NotADirectoryError`` for a file (or a link to one), ``FileNotFoundError`` for a dangling
    link, ``PermissionError`` when it cannot be created, and ``FileExistsError`` when it holds
    files the cache did not create. A directory this process cannot write is returned as it
    is (a cache there can be read, see :func:`require_writable`); in a writable one the lock
    file and the mark are created.
    """
    path = os.path.abspath(os.path.expanduser(os.fspath(save_dir)))
    if os.path.islink(path) and not os.path.exists(path):
        raise FileNotFoundError(
            f"CacheConfig.save_dir {save_dir!r} is a symlink to {os.readlink(path)!r}, which "
            "does not exist: create that directory or point save_dir elsewhere"
        )
    if os.path.exists(path) and not os.path.isdir(path):
        raise NotADirectoryError(
            f"CacheConfig.save_dir {save_dir!r} is a file, not a directory: the cache keeps "
            "several files there; pass a directory path (a new one is created)"
        )
    real = os.path.realpath(path)
    try:
        os.makedirs(real, exist_ok=True)
    except OSError as err:
        raise PermissionError(
            f"CacheConfig.save_dir {save_dir!r} cannot be created ({err.strerror}): pass a "
            "directory the cache may create and write"
        ) from None
    foreign = foreign_entries(real)
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise FileExistsError(
            f"CacheConfig.save_dir {save_dir!r} holds files the cache did not create ({shown}). "
            "The cache manages what it writes in save_dir (it replaces encoders/, "
            "manifest.json and the label files), so it uses only a new or empty directory or "
            "one it created: pass another one, e.g. "
            f"save_dir={os.path.join(os.fspath(save_dir), 'quaterion_cache')!r}"
        )
    if not writable(real):
        logger.info("The encoder cache in %s is read-only here: it is only read", real)
        return real
    os.close(os.open(os.path.join(real, LOCK), os.O_RDWR | os.O_CREAT, 0o666))  # umask applies
    if not os.path.exists(os.path.join(real, MARK)):
        with open(os.path.join(real, f"{MARK}.tmp-{os.getpid()}"), "w") as mark:
            mark.write("Encoder cache of quaterion: its files are managed by the cache.\n")
        os.replace(mark.name, os.path.join(real, MARK))
    return real


def writable(save_dir: str) -> bool:
    """Whether this process may write a cache into ``save_dir``: the directory, and its lock
    file where there is one (on a read-only mount neither is, whoever asks)."""
    lock = os.path.join(save_dir, LOCK)
    mine = not os.path.lexists(lock) or os.access(lock, os.W_OK)
    return mine and os.access(save_dir, os.W_OK | os.X_OK)


def require_writable(save_dir: str, why: str) -> None:
    """``PermissionError`` saying what to do unless :func:`writable` (``why``: what needed it)."""
    if not writable(save_dir):
        raise PermissionError(
            f"CacheConfig.save_dir {save_dir!r} cannot be written by this process (user id "
            f"{os.geteuid()}; a read-only mount, or a directory or lock file of another user) "
            f"and {why}. Pass a save_dir you can write, or have its owner make the directory "
            f"and {LOCK} group-writable (the cache's files follow the umask: use umask 002 "
            "for a cache shared by a group)"
        )


def open_lock(save_dir: str) -> "Optional[SaveDirLock]":
    """The lock of ``save_dir``, ``None`` where it has no lock file (not a cache yet, or a
    read-only one written before the lock existed): such a directory is read without."""
    path = os.path.join(save_dir, LOCK)
    if not os.path.isfile(path) or os.path.islink(path):
        return None
    with contextlib.suppress(OSError):
        return SaveDirLock(save_dir)
    return None


@contextlib.contextmanager
def shared_hold(save_dir: str) -> Iterator[None]:
    """The block holds ``save_dir``'s lock shared, so no writer switches generations under
    it (see :func:`open_lock`; no lock file is ever created by it)."""
    lock = open_lock(save_dir)
    try:
        if lock is not None:
            lock.shared()
        yield
    finally:
        if lock is not None:
            lock.release()


class SaveDirLock:
    """``flock`` on ``<save_dir>/.quaterion-cache.lock``: shared while a cache is loaded,
    exclusive while one is filled and written.

    The kernel drops the lock when its process exits, however it ends (a killed job never
    leaves a stale lock). Every attempt is non-blocking: a lock another process holds is a
    :class:`CacheDirInUseError` naming it, after ``wait_s`` seconds of retries.

    Under DDP the first process of every node locks the ``save_dir`` it sees: global rank 0
    first, then the others with :meth:`exclusive_beside`, which recognises rank 0's lock
    (the same directory, on a filesystem every node shares) by the record rank 0 wrote.
    """

    def __init__(self, save_dir: str, wait_s: Optional[float] = None):
        self.path = os.path.join(save_dir, LOCK)
        self.wait_s = LOCK_WAIT_S if wait_s is None else wait_s
        try:
            self._fd: Optional[int] = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except PermissionError:  # read-only here: shared holds only (flock needs no write)
            self._fd = os.open(self.path, os.O_RDONLY)

    def __del__(self) -> None:
        """A lock nobody references any more (e.g. of a model that was never cleaned up and
        is garbage-collected) is dropped, so it never blocks a later run of this process."""
        fd, self._fd = getattr(self, "_fd", None), None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def __getstate__(self) -> dict:
        """A copy (pickled to another process, deep-copied) holds nothing: the descriptor and
        the lock on it stay with this object."""
        return {**self.__dict__, "_fd": None}

    def _take(
        self, operation: int, wait_s: float, stop: Optional[Callable[[str], bool]] = None
    ) -> bool:
        """Take the lock; ``False`` (not taken) once ``stop(holder's record)`` is true."""
        deadline = time.monotonic() + wait_s
        for attempt in itertools.count():
            try:
                fcntl.flock(self._fd, operation | fcntl.LOCK_NB)
                _HELD.add(self)
                return True
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
            holder = self._holder()
            if stop is not None and stop(holder):
                return False
            if attempt == 0:
                logger.warning(
                    "The encoder cache in %s is in use by another process (%s): waiting for "
                    "it, at most %.0f s",
                    os.path.dirname(self.path),
                    holder,
                    wait_s,
                )
            if time.monotonic() >= deadline:
                if self._held_here():
                    raise CacheDirInUseError(
                        f"The encoder cache in {os.path.dirname(self.path)!r} is held by this "
                        "process, e.g. by a TrainableModel whose cache was set up (cache_loaders, "
                        "before a trainer.fit run without Quaterion.fit) and not cleaned up "
                        "since. Call that model's unwrap_cache() when its fit ends (Quaterion.fit "
                        "does it for you), or give this run another save_dir"
                    )
                raise CacheDirInUseError(
                    f"The encoder cache in {os.path.dirname(self.path)!r} is being written by "
                    f"another process, or read by a fit that still runs ({holder}): wait for "
                    "it to finish and run again (its cache is then reused), or give this run "
                    "another save_dir"
                )
            time.sleep(0.2)

    def _held_here(self) -> bool:
        """Whether another lock object of this process holds this lock file now."""
        held = [lock._fd for lock in list(_HELD) if lock is not self and lock._fd is not None]
        return any(os.path.samestat(os.fstat(self._fd), os.fstat(fd)) for fd in held)

    def _holder(self) -> str:
        with open(self.path) as file:
            return file.read().strip() or "a reader of the cache"

    def shared(self) -> None:
        """Hold the lock with other readers (waits ``wait_s`` for a writer, then raises); a
        writer's hold becomes a shared one (its record stays, naming the holder)."""
        self._take(fcntl.LOCK_SH, self.wait_s)

    def unlock(self) -> None:
        """Drop the lock this process holds (the file stays open for a later lock)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        _HELD.discard(self)

    def exclusive(self, moved: Optional[Callable[[], bool]] = None) -> Optional[str]:
        """Hold the lock alone and record this process in the lock file; returns the record
        (unique to this hold), or ``None`` (nothing held) if ``moved()`` turns true while it
        waits (e.g. another job wrote a cache there meanwhile)."""
        self.unlock()  # conversion is not atomic: release first
        if not self._take(fcntl.LOCK_EX, self.wait_s, moved and (lambda holder: moved())):
            return None
        record = f"pid {os.getpid()} on {socket.gethostname()} (hold {secrets.token_hex(6)})"
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, record.encode(), 0)
        os.fsync(self._fd)  # visible to the other nodes reading it on a shared filesystem
        return record

    def exclusive_beside(self, record: str) -> bool:
        """Hold the lock alone, unless the holder is the process that wrote ``record`` (the
        same directory, locked by global rank 0): then ``False``, and nothing is held."""
        self.unlock()
        if self._take(fcntl.LOCK_EX, self.wait_s, record.__eq__):
            mine = f"pid {os.getpid()} on {socket.gethostname()} (beside {record})"
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, mine.encode(), 0)
            return True
        return False

    def release(self) -> None:
        """Drop the lock (and the record of a writer)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):  # another process holds it: its record stays
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.ftruncate(self._fd, 0)  # we held it alone: nobody else reads a stale name
        _HELD.discard(self)
        os.close(self._fd)
        self._fd = None
