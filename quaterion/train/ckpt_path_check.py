"""Check ``Quaterion.fit(..., ckpt_path=...)`` before the cache fill and the first epoch.

Lightning reads the checkpoint only when ``trainer.fit`` starts, after the encoder cache has
been filled (which can take hours); a wrong path then fails with an error from deep inside
torch (``unpack requires a buffer of 4 bytes`` for a truncated file).
"""

import os
import zipfile
from typing import TYPE_CHECKING, Optional, Union

from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.strategies import DeepSpeedStrategy, FSDPStrategy, ModelParallelStrategy

if TYPE_CHECKING:
    import pytorch_lightning as pl

#: ``ckpt_path`` values Lightning resolves itself (``"registry"`` / ``"registry:<name>"`` too).
LIGHTNING_KEYWORDS = ("last", "best", "hpc")

_ZIP_MAGIC = b"PK\x03\x04"
#: torch's legacy (non-zip) format starts with a pickle of protocol 2 or higher
_PICKLE_PROTO = b"\x80"


def reads_single_files(trainer: Optional["pl.Trainer"]) -> bool:
    """Whether ``trainer`` reads checkpoints as single torch files: its strategy keeps
    Lightning's plain ``TorchCheckpointIO`` and does not shard (FSDP, DeepSpeed and model
    parallelism may read a directory; a custom ``CheckpointIO`` may read any format).
    ``None`` (the default trainer, one device) does."""
    if trainer is None:
        return True
    strategy = trainer.strategy
    sharded = (FSDPStrategy, DeepSpeedStrategy, ModelParallelStrategy)
    return type(strategy.checkpoint_io) is TorchCheckpointIO and not isinstance(strategy, sharded)


def check_ckpt_path(
    ckpt_path: Optional[Union[str, os.PathLike]], trainer: Optional["pl.Trainer"] = None
) -> None:
    """Refuse a ``ckpt_path`` that cannot be a checkpoint, with the reason and the fix.

    Accepted without looking: ``None``, Lightning's keywords (``"last"``, ``"best"``,
    ``"hpc"``, ``"registry[:name]"``) and remote URLs (``s3://...``). A local path must
    exist; for a ``trainer`` that reads single torch files (:func:`reads_single_files`:
    ``None``, one device or DDP) it must be a file that starts like a torch checkpoint (a
    complete zip archive, or torch's legacy pickle format).

    Raises:
        TypeError: ``ckpt_path`` is not a ``str`` or ``os.PathLike``.
        FileNotFoundError: no such file.
        IsADirectoryError: a directory (the error lists the ``.ckpt`` files in it).
        ValueError: the file is empty, truncated, not a torch checkpoint or not a regular
            file (a named pipe).
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
    if not os.path.exists(path):
        raise FileNotFoundError(f"ckpt_path {path} does not exist; {fix}")
    if not reads_single_files(trainer):
        return
    if os.path.isdir(path):
        found = sorted(name for name in os.listdir(path) if name.endswith(".ckpt"))
        inside = f" (it holds {found})" if found else " (it holds no .ckpt file)"
        raise IsADirectoryError(
            f"ckpt_path {path} is a directory{inside}, not a checkpoint file; {fix}"
        )
    if not os.path.isfile(path):  # a named pipe or a device: reading it could block
        raise ValueError(f"ckpt_path {path} is not a regular file; {fix}")
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
