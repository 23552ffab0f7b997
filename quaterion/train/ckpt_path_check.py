"""Check ``Quaterion.fit(..., ckpt_path=...)`` before the cache fill and the first epoch.

Lightning reads the checkpoint only when ``trainer.fit`` starts, after the encoder cache has
been filled (which can take hours); a wrong path then fails with an error from deep inside
torch (``unpack requires a buffer of 4 bytes`` for a truncated file).
"""

import os
import zipfile
from typing import Optional, Union

#: ``ckpt_path`` values Lightning resolves itself (``"registry"`` / ``"registry:<name>"`` too).
LIGHTNING_KEYWORDS = ("last", "best", "hpc")

_ZIP_MAGIC = b"PK\x03\x04"
#: torch's legacy (non-zip) format starts with a pickle of protocol 2 or higher
_PICKLE_PROTO = b"\x80"


def check_ckpt_path(ckpt_path: Optional[Union[str, os.PathLike]]) -> None:
    """Refuse a ``ckpt_path`` that cannot be a checkpoint, with the reason and the fix.

    Accepted without looking: ``None``, Lightning's keywords (``"last"``, ``"best"``,
    ``"hpc"``, ``"registry[:name]"``) and remote URLs (``s3://...``). A local path must be an
    existing file that starts like a torch checkpoint (a complete zip archive, or torch's
    legacy pickle format).

    Raises:
        TypeError: ``ckpt_path`` is not a ``str`` or ``os.PathLike``.
        FileNotFoundError: no such file.
        IsADirectoryError: a directory (the error lists the ``.ckpt`` files in it).
        ValueError: the file is empty, truncated or not a torch checkpoint.
    """
    if ckpt_path is None:
        return
    if not isinstance(ckpt_path, (str, os.PathLike)) or not isinstance(os.fspath(ckpt_path), str):
        raise TypeError(
            f"ckpt_path must be the path of a checkpoint file (str or os.PathLike) or one of "
            f"{LIGHTNING_KEYWORDS}; got {type(ckpt_path).__name__} {ckpt_path!r}. Pass e.g. "
            "'checkpoints/last.ckpt', or ckpt_path=None to start afresh"
        )
    path = os.fspath(ckpt_path)
    if path in LIGHTNING_KEYWORDS or path.lower().startswith("registry") or "://" in path:
        return
    fix = "pass a .ckpt file written by Lightning's ModelCheckpoint, or ckpt_path=None to start afresh"
    if os.path.isdir(path):
        found = sorted(name for name in os.listdir(path) if name.endswith(".ckpt"))
        inside = f" (it holds {found})" if found else " (it holds no .ckpt file)"
        raise IsADirectoryError(
            f"ckpt_path {path} is a directory{inside}, not a checkpoint file; {fix}"
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"ckpt_path {path} does not exist; {fix}")
    with open(path, "rb") as file:
        head = file.read(len(_ZIP_MAGIC))
    if head.startswith(_ZIP_MAGIC):
        if zipfile.is_zipfile(path):
            return
        problem = "a zip archive without its end (truncated, e.g. a save killed mid-write)"
    elif head.startswith(_PICKLE_PROTO):
        return
    elif not head:
        problem = "empty"
    else:
        problem = f"not a torch checkpoint (it starts with {head!r})"
    raise ValueError(f"ckpt_path {path} is {problem}; {fix}")
