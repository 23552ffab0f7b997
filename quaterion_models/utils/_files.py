"""Private file helpers: atomic writes, safe weight loading, atomic directory swap."""

import json
import os
import pickle
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Union

import torch

from quaterion_models.utils.classes import restore_class

PathLike = Union[str, "os.PathLike[str]"]


def _sibling(path: Path, tag: str) -> Path:
    return path.parent / f".{path.name}.{tag}-{uuid.uuid4().hex}"


def _write_atomic(path: PathLike, write) -> None:
    """Write through ``write(tmp_path)`` into a temp file next to ``path``, then ``os.replace``."""
    path = Path(path)
    tmp = _sibling(path, "tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: PathLike, data: Any) -> None:
    """Atomically write ``data`` as JSON (indent 2)."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as file:
            json.dump(data, file, indent=2)

    _write_atomic(path, write)


def read_json(path: PathLike) -> Any:
    """Read a JSON file; ``FileNotFoundError`` / ``ValueError`` name the path."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: expected a JSON config file written by save()"
        )
    with open(path, encoding="utf-8") as file:
        try:
            return json.load(file)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON ({err}); save the model again") from err


def save_torch(obj: Any, path: PathLike) -> None:
    """Atomically ``torch.save(obj)`` to ``path``."""
    _write_atomic(path, lambda tmp: torch.save(obj, tmp))


def load_state_dict(path: PathLike) -> "dict[str, torch.Tensor]":
    """Load a plain state dict with ``torch.load(map_location="cpu", weights_only=True)``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        pickle.UnpicklingError: the file holds anything besides tensors and plain containers
            (code would run when unpickling it); it is refused, nothing is executed.
        ValueError: the file unpickles safely but is not a ``{name: Tensor}`` mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: expected head weights written by save()")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise pickle.UnpicklingError(
            f"refusing to load {path}: the file is not a plain state dict (it references "
            f"objects other than tensors and containers, and unpickling it could run code). "
            f"Only load weights from trusted sources; re-save the head with head.save(). "
            f"Details: {str(err).splitlines()[-1] if str(err) else err!r}"
        ) from err
    if not isinstance(state, Mapping) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()
    ):
        raise ValueError(
            f"{path} is not a plain state dict: expected a mapping of str -> Tensor, got "
            f"{type(state).__name__}; re-save the head with head.save()"
        )
    return dict(state)


_MODEL_ENTRIES = frozenset({"config.json", "head", "encoders"})


@contextmanager
def atomic_directory(target: PathLike) -> Iterator[Path]:
    """Yield a temp sibling directory; on success swap it in place of ``target``.

    Everything is written into ``.<name>.tmp-<uuid>`` in the same parent. If the body
    raises, the temp directory is removed and ``target`` is left exactly as it was. On
    success the old ``target`` (if any) is renamed away, the new one renamed into place and
    the old one deleted, so ``target`` never mixes parts of two saves. Entries of an
    existing ``target`` that are not part of a saved model are moved into the new one.
    """
    target = Path(os.path.abspath(target))
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(
            f"cannot save into {target}: it exists and is not a directory; pass a directory path"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(target, "tmp")
    tmp.mkdir()
    try:
        yield tmp
        _swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_in(new: Path, target: Path) -> None:
    if not target.exists():
        os.rename(new, target)
        return
    moved: list[str] = []
    try:
        for entry in os.listdir(target):
            if entry not in _MODEL_ENTRIES:  # keep the user's unrelated files
                os.rename(target / entry, new / entry)
                moved.append(entry)
        old = _sibling(target, "old")
        os.rename(target, old)
        try:
            os.rename(new, target)
        except BaseException:
            os.rename(old, target)
            raise
    except BaseException:
        for entry in moved:  # ``target`` is the previous save again: give its files back
            os.rename(new / entry, target / entry)
        raise
    shutil.rmtree(old, ignore_errors=True)


def existing_dir(root: str, *parts: str) -> str:
    """``root/parts...`` if it is a directory, else ``FileNotFoundError`` naming both."""
    path = os.path.join(root, *parts)
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"{root} is not a complete saved SimilarityModel: {path} does not exist; save the model again"
        )
    return path


def restore_subclass(record: dict, base: type, config_path: str) -> type:
    """``restore_class(record)``, checked to be a subclass of ``base`` (``TypeError`` if not)."""
    restored = restore_class(record)
    if not (isinstance(restored, type) and issubclass(restored, base)):
        raise TypeError(
            f"{config_path} names {record.get('module')}.{record.get('class')}, which is not "
            f"a {base.__name__} subclass; the config is corrupted or not a SimilarityModel"
        )
    return restored
