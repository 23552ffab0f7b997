"""Crash-safe replacement of a saved-model directory, safe for the user's own files.

``save`` writes a complete model into ``.<name>.tmp-<uuid>`` next to the target, then, holding
an exclusive lock on the parent directory:

1. checks that the swap can finish (the target is a saved model or holds none of the model's
   entries; every directory that must be renamed or emptied is writable) -- before anything
   is moved, so a refusal leaves everything where it was;
2. renames the previous ``<name>`` to ``.<name>.old-<uuid>``;
3. renames the temp directory to ``<name>``;
4. moves the user's own files from the old directory into ``<name>``, deletes the old one.

A crash between 2 and 3 leaves no ``<name>``; :func:`recover_directory` (run by ``load`` and
by the next ``save``) finds the complete temp directory (it holds ``config.json``, written
last) or else the old one and renames it back. A crash after 3 leaves ``<name>`` complete and
an old sibling whose user files ``recover_directory`` moves over.

A target that is a symbolic link is followed: the model is written where the link points and
the link stays a link. Loads hold a shared lock on the same parent, so they never read half of
one save and half of another.

Temp directories of saves that died (killed while writing) are removed by the next ``save`` or
``load`` of the same target (:func:`remove_abandoned_temps`). A running save holds an exclusive
``flock`` on ``<temp>/.save-in-progress`` for its whole life; a temp directory is removed only
while its remover holds that lock, which the kernel gives only once the writer has exited. A
temp directory without that file (written by an earlier version, which had none, or by a save
killed in the instant before the file got its name or between deleting it and the swap) is
removed only when nothing in it has changed for :data:`ABANDONED_AGE_S`. Where locks are unavailable (Windows, or a file system
refusing them) temp directories are never removed automatically: delete ``.<name>.tmp-*``
yourself when no save is running.
"""

import errno
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Callable, NamedTuple, Optional

from quaterion_models.utils.atomic import PathLike, fsync_directory, sibling_path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; renames there are not concurrent-safe either
    fcntl = None

#: Entries of a saved model; anything else in its directory belongs to the user and is kept.
MODEL_ENTRIES = frozenset({"config.json", "head", "encoders"})
_COMPLETE_MARKER = "config.json"


class SaveLayout(NamedTuple):
    """One kind of directory that :func:`atomic_directory` writes and may replace."""

    #: How messages call it (``"a saved SimilarityModel"``).
    name: str
    #: What a save writes; anything else in the directory is the user's and is kept.
    entries: frozenset
    #: Whether a parsed ``config.json`` was written by this kind of save, so the directory
    #: holding it may be replaced (a directory of another kind never is).
    is_own: Callable[[dict], bool]


def _is_servable_config(config: dict) -> bool:
    # an ONNX export's config also has "encoders" and "head", plus "format"
    return {"encoders", "head"} <= config.keys() and "format" not in config


#: ``SimilarityModel.save``'s directory.
SERVABLE = SaveLayout("a saved SimilarityModel", MODEL_ENTRIES, _is_servable_config)


#: Longest wait for another process's save or load of the same parent directory.
LOCK_TIMEOUT_S = 600.0

#: A running save holds an exclusive ``flock`` on this file inside its temp directory.
IN_PROGRESS_FILE = ".save-in-progress"

#: A temp directory without :data:`IN_PROGRESS_FILE` (an older version's) is removed only when
#: nothing in it changed for this long (seconds): it cannot be told from a running old save.
ABANDONED_AGE_S = 6 * LOCK_TIMEOUT_S

_held = threading.local()  # realpath -> modes this thread holds ("sh"/"ex"), outermost first


def _flock(directory: PathLike, mode: int) -> Optional[int]:
    """An fd of ``directory`` holding ``flock(mode)``; ``None`` where locking is unsupported.

    Raises:
        BlockingIOError: ``mode`` includes ``LOCK_NB`` and another holder has the lock.
    """
    if fcntl is None:
        return None
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, mode)
    except BlockingIOError:
        os.close(fd)
        raise
    except OSError:  # a file system refusing locks
        os.close(fd)
        return None
    return fd


def _acquire(directory: str, shared: bool, timeout: float) -> Optional[int]:
    """Poll for the lock (so a stuck holder gives an error, not a hang)."""
    mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        try:
            return _flock(directory, mode)
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    errno.ETIMEDOUT,
                    f"another process has been saving or loading a model in {directory} for "
                    f"{timeout:g} s; wait for it to finish (or stop it) and try again",
                    directory,
                ) from None
            time.sleep(pause)
            pause = min(pause * 2, 0.1)


@contextmanager
def directory_lock(
    directory: PathLike, shared: bool = False, timeout: Optional[float] = None
) -> Iterator[None]:
    """Hold an advisory ``flock`` on ``directory`` itself (no lock file is created).

    Exclusive for swaps, shared for reads. A lock this thread already holds on the directory
    is reused (a load inside a load). Best effort: where locking is unsupported (no ``fcntl``,
    a file system refusing it, an unreadable directory) the block runs unlocked.

    Raises:
        TimeoutError: another process held the lock for ``timeout`` seconds (default
            :data:`LOCK_TIMEOUT_S`).
        RuntimeError: an exclusive lock is asked for while this thread holds a shared one
            (a save called from inside a load of the same directory), which would never end.
    """
    key = os.path.realpath(directory)
    held = _held.__dict__.setdefault("modes", {})
    modes = held.setdefault(key, [])
    if modes and not shared and "ex" not in modes:
        raise RuntimeError(
            f"cannot save into {directory} while this thread is loading a model from it; "
            "save after the load has returned"
        )
    wait = LOCK_TIMEOUT_S if timeout is None else timeout
    fd = None if modes else (_acquire(key, shared, wait) if fcntl else None)
    modes.append("sh" if shared else "ex")
    try:
        yield
    finally:
        modes.pop()
        if not modes:
            del held[key]
        if fd is not None:
            os.close(fd)  # releases the lock


def _is_abandoned(tmp: Path) -> bool:
    """Whether no running save holds ``tmp`` (each save locks its temp directory and the
    :data:`IN_PROGRESS_FILE` in it); ``True`` where locking is unsupported, as before."""
    if fcntl is None:
        return True
    try:
        fd = _flock(tmp, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    if fd is not None:
        os.close(fd)
    with _writer_lock(tmp) as state:
        return state != "held"


def _start_writing(tmp: Path) -> Optional[int]:
    """Create :data:`IN_PROGRESS_FILE` in the fresh ``tmp`` and lock it for the save's life.

    The file is created under another name, locked, then renamed, so a remover never finds
    it unlocked while the save runs. Returns the locked fd, or ``None`` where locking is
    unavailable (no file is left then, so a remover treats ``tmp`` like an older version's:
    see :data:`ABANDONED_AGE_S`)."""
    if fcntl is None:
        return None
    starting = tmp / f"{IN_PROGRESS_FILE}.starting"
    fd = os.open(starting, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # a file system refusing locks (a fresh file is never held by another)
        os.close(fd)
        os.unlink(starting)
        return None
    os.rename(starting, tmp / IN_PROGRESS_FILE)
    return fd


@contextmanager
def _writer_lock(tmp: Path) -> Iterator[str]:
    """Try to take the lock of the save that writes ``tmp``; yield, holding it if taken:

    ``"held"`` (a save is running), ``"free"`` (its writer has exited: the lock is ours for the
    block), ``"none"`` (no :data:`IN_PROGRESS_FILE`: an older version's temp directory) or
    ``"unknown"`` (locking unsupported here, or ``tmp`` vanished)."""
    if fcntl is None:
        yield "unknown"
        return
    try:
        fd = os.open(tmp / IN_PROGRESS_FILE, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        yield "none" if tmp.is_dir() else "unknown"
        return
    except OSError:
        yield "unknown"
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            state = "held"
        except OSError:
            state = "unknown"
        else:
            state = "free" if _same_file(fd, tmp / IN_PROGRESS_FILE) else "unknown"
        yield state
    finally:
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (not removed or replaced since)."""
    try:
        here, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _newest_change(root: Path) -> float:
    """Latest modification time of ``root`` or anything under it (links not followed)."""
    newest = _mtime(root)
    for directory, subdirs, files in os.walk(root):
        for name in subdirs + files:
            try:
                newest = max(newest, os.lstat(os.path.join(directory, name)).st_mtime)
            except OSError:
                pass
    return newest


def _remove_if_abandoned(tmp: Path, keep_complete: bool) -> None:
    if keep_complete and _is_complete(tmp):
        return  # possibly the only complete copy of the model
    with _writer_lock(tmp) as state:
        if state == "free":  # removed while holding the dead writer's lock
            shutil.rmtree(tmp, ignore_errors=True)
            return
    if state != "none" or not _is_abandoned(tmp):
        return
    if time.time() - _newest_change(tmp) > ABANDONED_AGE_S:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_abandoned_temps(target: PathLike) -> None:
    """Delete the temp directories ``.<name>.tmp-*`` of saves into ``target`` whose writer
    has exited (killed mid-save), never one that a running save (of any process) writes.

    A complete temp directory (it holds ``config.json``) is kept while ``target`` holds no
    complete model: :func:`recover_directory` restores it. Best effort: a directory that
    cannot be deleted (read-only) is left for the next call. Where ``flock`` is unavailable
    nothing is removed. Symbolic links are followed. See the module docstring.
    """
    target = resolve_target(target)
    if fcntl is None:
        return
    keep_complete = not _is_complete(target)
    for tmp in _siblings(target, "tmp"):
        _remove_if_abandoned(tmp, keep_complete)


def resolve_target(path: PathLike) -> Path:
    """Absolute ``path`` with symbolic links followed (a link to ``v3`` gives ``v3``).

    Raises:
        TypeError: ``path`` is not a ``str`` or ``os.PathLike`` (an int, ``None``, bytes).
        ValueError: ``path`` is empty (which would mean the current directory).
        OSError: the path is a symbolic link loop.
    """
    if not isinstance(path, (str, os.PathLike)) or not isinstance(os.fspath(path), str):
        raise TypeError(
            f"expected a model directory path (str or os.PathLike), got "
            f"{type(path).__name__} {path!r}; pass e.g. 'my-model' or pathlib.Path('my-model')"
        )
    if os.fspath(path) == "":
        raise ValueError(
            "the model directory path is empty; pass a directory name, or '.' for the current "
            "directory"
        )
    resolved = Path(os.path.realpath(path))
    if resolved.is_symlink():
        raise OSError(
            errno.ELOOP,
            f"cannot use {path}: it is a symbolic link that never reaches a real path (a loop); "
            "fix the link",
            str(path),
        )
    return resolved


def _siblings(target: Path, tag: str) -> list[Path]:
    prefix = f".{target.name}.{tag}-"
    try:
        entries = os.listdir(target.parent)
    except OSError:  # missing or unlistable parent (execute-only): nothing to recover
        return []
    found = [
        target.parent / entry
        for entry in entries
        if entry.startswith(prefix) and (target.parent / entry).is_dir()
    ]
    return sorted(found, key=_mtime, reverse=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # removed meanwhile (a concurrent save cleaning up)
        return 0.0


def _is_complete(path: Path) -> bool:
    return (path / _COMPLETE_MARKER).is_file()


def is_saved_model(path: Path, layout: SaveLayout = SERVABLE) -> bool:
    """Whether ``path/config.json`` is a JSON object written by ``layout``'s save (by
    default: ``SimilarityModel.save``, whose config has ``encoders`` and ``head``)."""
    if not _is_complete(path):  # not a regular file (a named pipe would block the read)
        return False
    try:
        with open(path / _COMPLETE_MARKER, encoding="utf-8") as file:
            config = json.load(file)
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(config, dict) and layout.is_own(config)


def _move_user_files(source: Path, target: Path, layout: SaveLayout) -> None:
    for entry in os.listdir(source):
        if entry not in layout.entries and not os.path.lexists(target / entry):
            os.rename(source / entry, target / entry)


def _needs_recovery(target: Path) -> bool:
    return not target.exists() or bool(_siblings(target, "old"))


def recover_directory(target: PathLike, layout: SaveLayout = SERVABLE) -> Path:
    """Finish a swap that a crash interrupted; return the directory holding the model.

    If ``target`` is missing but a complete sibling from an interrupted save exists, that
    sibling (the new save if complete, else the previous one) is renamed to ``target``. If
    it cannot be renamed (read-only parent), its path is returned so it can still be read.
    Symbolic links are followed. ``layout`` tells the user's files from the save's. Temp
    directories of saves that died are then removed (:func:`remove_abandoned_temps`).
    """
    target = resolve_target(target)
    if _needs_recovery(target):
        with directory_lock(target.parent):
            found = _recover(target, layout)
    else:
        found = target
    remove_abandoned_temps(target)
    return found


def _recover(target: Path, layout: SaveLayout) -> Path:
    if not target.exists():
        candidates = [p for p in _siblings(target, "tmp") if _is_complete(p) and _is_abandoned(p)]
        candidates += [p for p in _siblings(target, "old") if _is_complete(p)]
        if not candidates:
            return target
        try:
            os.rename(candidates[0], target)
            fsync_directory(target.parent)
        except OSError:
            return candidates[0]
        with suppress(FileNotFoundError):  # a dead save's mark is not one of the user's files
            os.unlink(target / IN_PROGRESS_FILE)
    if _is_complete(target):
        for old in _siblings(target, "old"):
            try:
                _move_user_files(old, target, layout)
                shutil.rmtree(old)
            except OSError:
                pass  # read-only: nothing is lost by leaving it, the next save retries
    return target


@contextmanager
def reading_directory(path: PathLike, layout: SaveLayout = SERVABLE) -> Iterator[Path]:
    """Yield the directory to read a saved model from, recovered after a crash if needed,
    holding a shared lock so that no save swaps it while it is read."""
    target = recover_directory(path, layout)
    with directory_lock(target.parent, shared=True):
        yield target


def check_replaceable(target: Path, layout: SaveLayout = SERVABLE) -> None:
    """Refuse, before anything is moved, a swap that could not finish or would lose files.

    Raises:
        FileExistsError: ``target`` is not a directory of ``layout``'s kind (e.g. an ONNX
            export, for a save) but holds some of ``layout.entries`` (which a save would
            replace).
        PermissionError: ``target``, one of its model directories or one of the user's
            directories (moved into the new save) is not writable, or the parent is not.
    """
    if not os.access(target.parent, os.W_OK | os.X_OK):
        raise PermissionError(
            errno.EACCES,
            f"cannot save into {target}: its parent directory is not writable (the new save is "
            f"written next to it, then renamed); make {target.parent} writable",
            str(target.parent),
        )
    if not target.exists():
        return
    entries = set(os.listdir(target))
    clashes = sorted(entries & layout.entries)
    if clashes and not is_saved_model(target, layout):
        raise FileExistsError(
            errno.EEXIST,
            f"refusing to save into {target}: it is not {layout.name} but holds "
            f"{clashes}, which a save would replace. Save into a new or empty directory, or "
            "move those entries away",
            str(target),
        )
    for directory in _directories_to_write(target, entries, layout):
        if not os.access(directory, os.W_OK | os.X_OK):
            raise PermissionError(
                errno.EACCES,
                f"cannot save into {target}: {directory} is read-only, so the previous save "
                "could not be replaced without stranding its files. Nothing was changed; "
                f"make it writable (chmod -R u+w {target}) or save elsewhere",
                str(directory),
            )


def _directories_to_write(target: Path, entries: set, layout: SaveLayout) -> Iterator[Path]:
    """``target`` unless empty (its entries are moved or deleted), every directory of its
    model entries (emptied), and each of the user's directories (renamed into another
    parent, which updates their ``..``)."""
    if entries:
        yield target
    for entry in sorted(entries):
        path = target / entry
        if path.is_symlink() or not path.is_dir():
            continue
        if entry not in layout.entries:
            yield path
            continue
        for directory, subdirs, _ in os.walk(path):
            yield Path(directory)
            subdirs[:] = [d for d in subdirs if not os.path.islink(os.path.join(directory, d))]


def _check_target_path(target: Path) -> Path:
    """Refuse a ``target`` that is a file or lies under one; returns ``target``."""
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(
            f"cannot save into {target}: it exists and is not a directory; pass a directory path"
        )
    blocking = next((p for p in target.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise NotADirectoryError(
            f"cannot save into {target}: {blocking} is a file, not a directory; pass a path "
            "whose parent folders are directories"
        )
    return target


def check_save_target(path: PathLike, layout: SaveLayout = SERVABLE) -> Path:
    """Check, without writing anything, that a save into ``path`` could start: the checks
    :func:`atomic_directory` makes before it writes. For programs that work long before
    they save (a training run), so that a bad output path fails at once.

    Returns the resolved target (symbolic links followed).

    Raises:
        TypeError / ValueError: ``path`` is not a path, or is empty.
        NotADirectoryError: ``path`` is a file, or one of its parents is.
        FileExistsError / PermissionError: see :func:`check_replaceable`; for a directory
            still to be created, :class:`PermissionError` when its nearest existing parent is
            not writable.
    """
    target = _check_target_path(resolve_target(path))
    existing = next(p for p in (target, *target.parents) if p.exists())
    if existing != target and existing != target.parent:
        if not os.access(existing, os.W_OK | os.X_OK):
            raise PermissionError(
                errno.EACCES,
                f"cannot save into {target}: {existing} is not writable, so the missing "
                f"directories cannot be created; make it writable or save elsewhere",
                str(existing),
            )
        return target
    check_replaceable(target, layout)
    return target


@contextmanager
def atomic_directory(target: PathLike, layout: SaveLayout = SERVABLE) -> Iterator[Path]:
    """Yield a temp sibling directory; on success swap it in place of ``target``.

    If the body raises, the temp directory is removed and ``target`` is left exactly as it
    was. Every file written is fsynced before the swap, so ``target`` (or, after a crash in
    the swap, the sibling :func:`recover_directory` restores) always holds one complete save.
    Entries of an existing ``target`` that are not part of a saved model are kept. A symbolic
    link is followed (the link stays a link). ``layout`` is the kind of directory written
    (default: a ``SimilarityModel`` servable); a directory of another kind is not replaced.

    Raises:
        NotADirectoryError: ``target`` is a file.
        FileExistsError / PermissionError: see :func:`check_replaceable` (checked before the
            body runs and again, under the lock, before the swap).
    """
    target = _check_target_path(resolve_target(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_directory(target, layout)
    with directory_lock(target.parent, shared=True):  # no swap under way while it looks
        check_replaceable(target, layout)
    tmp = sibling_path(target, "tmp")
    tmp.mkdir()
    locks = [fd for fd in (_flock(tmp, fcntl.LOCK_EX) if fcntl else None,) if fd is not None]
    try:
        writer_lock = _start_writing(tmp)  # marks it as in use until this save ends
        if writer_lock is not None:
            locks.append(writer_lock)
        yield tmp
        _fsync_tree(tmp)
        with directory_lock(target.parent):
            _recover(target, layout)
            check_replaceable(target, layout)
            if writer_lock is not None:  # still held: the directory stays marked in use
                os.unlink(tmp / IN_PROGRESS_FILE)
            _swap_in(tmp, target, layout)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        for fd in locks:
            os.close(fd)


def _fsync_tree(root: Path) -> None:
    """fsync every file and directory under ``root`` (encoders write files their own way)."""
    for directory, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(directory, name), "rb") as file:
                try:
                    os.fsync(file.fileno())
                except OSError:  # platforms that cannot fsync a read-only handle
                    pass
        fsync_directory(directory)


def _swap_in(new: Path, target: Path, layout: SaveLayout) -> None:
    if not target.exists():
        os.rename(new, target)
        fsync_directory(target.parent)
        return
    cwd = _working_directory_in(target)
    old = sibling_path(target, "old")
    os.rename(target, old)
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(old, target)
        raise
    fsync_directory(target.parent)
    _move_user_files(old, target, layout)
    shutil.rmtree(old, ignore_errors=True)  # checked writable; a leftover is retried later
    if cwd is not None:  # it worked in the replaced directory: back to the same path
        os.chdir(cwd if os.path.isdir(cwd) else target)


def _working_directory_in(target: Path) -> Optional[str]:
    """This process's working directory if it is ``target`` or inside it, else ``None``."""
    try:
        cwd = os.getcwd()
    except OSError:  # already deleted
        return None
    inside = cwd == str(target) or cwd.startswith(str(target).rstrip(os.sep) + os.sep)
    return cwd if inside else None
