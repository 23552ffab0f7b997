"""Crash-safe file writes: a reader sees the old file or the new one, never a partial one."""

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Optional, Union

PathLike = Union[str, "os.PathLike[str]"]


def sibling_path(path: PathLike, tag: str) -> Path:
    """A fresh hidden path next to ``path``: ``<parent>/.<name>.<tag>-<uuid hex>``."""
    path = Path(path)
    return path.parent / f".{path.name}.{tag}-{uuid.uuid4().hex}"


def fsync_directory(path: PathLike) -> None:
    """Flush a directory's entries (renames, new files) to disk; a no-op where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # Windows cannot open directories; its renames are journaled
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_write(path: PathLike, mode: str = "wb", encoding: Optional[str] = None) -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; on success it replaces ``path``.

    The data is flushed and fsynced, the file renamed over ``path`` with ``os.replace`` and
    the directory fsynced, so after a crash at any instant ``path`` holds either its previous
    content or the complete new one. If the block raises, ``path`` is untouched and the
    temporary file removed.

    Args:
        path: destination file; its directory must exist.
        mode: ``"wb"`` (default) or ``"w"`` for text.
        encoding: text encoding for ``"w"`` (default ``"utf-8"``).

    Example::

        with atomic_write("weights.bin") as file:
            torch.save(state_dict, file)
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write: `mode` must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    tmp = sibling_path(path, "tmp")
    if mode == "w" and encoding is None:
        encoding = "utf-8"
    try:
        with open(tmp, mode, encoding=encoding) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_directory(path.parent)
