"""File helpers shared by both packages: JSON and torch files, safe weight loading, crash-safe
directory swap."""

import functools
import json
import os
import pickle
import shutil
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from quaterion_models.utils.atomic import PathLike, atomic_write, fsync_directory, sibling_path
from quaterion_models.utils.config import ConfigFile
from quaterion_models.utils.errors import DamagedFileError, UnsafeFileError

TRUSTED_FIX = "SimilarityModel.load(path, trusted=True)"

#: Largest JSON config file :func:`read_json` parses (a saved config is a few KiB).
MAX_JSON_BYTES = 16 * 2**20


def write_json(path: PathLike, data: Any) -> None:
    """Atomically write ``data`` as JSON (indent 2, UTF-8)."""
    with atomic_write(path, "w") as file:
        json.dump(data, file, indent=2)


def read_json(path: PathLike, what: str = "a JSON config file written by save()") -> Any:
    """Read a JSON file.

    Raises:
        FileNotFoundError: ``path`` does not exist (named in the message).
        DamagedFileError: ``path`` is not valid UTF-8 JSON.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: expected {what}")
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise DamagedFileError(
            f"{path} is damaged or not a saved model file: expected {what}, but it is {size} "
            f"bytes (config files are at most {MAX_JSON_BYTES}); save the model again"
        )
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        detail = "nested too deeply" if isinstance(err, RecursionError) else str(err)
        raise DamagedFileError(
            f"{path} is damaged or not a saved model file: expected {what}, but it is not "
            f"valid JSON ({detail}); save the model again or copy the directory again"
        ) from None if isinstance(err, RecursionError) else err


def read_json_dict(path: PathLike, what: str) -> dict:
    """:func:`read_json` checked to hold a JSON object (``DamagedFileError`` otherwise)."""
    return ConfigFile(path, read_json(path, what), what).data


def save_torch(obj: Any, path: PathLike) -> None:
    """Atomically ``torch.save(obj)`` to ``path``."""
    with atomic_write(path) as file:
        torch.save(obj, file)


@functools.cache
def nn_building_blocks() -> tuple:
    """The allowlist for pickled modules: every ``nn.Module`` class of ``torch.nn.modules``
    plus the activation functions torch layers store (``F.relu``, ``F.gelu``)."""
    blocks = {nn.Sequential, nn.Module}
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith("torch.nn.modules"):
            continue
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, nn.Module)
                and value.__module__.startswith("torch.nn.modules")
            ):
                blocks.add(value)
    functions = [nn.functional.relu, nn.functional.gelu]
    return tuple(sorted(blocks, key=_global_name)) + tuple(functions)


def _global_name(obj: Any) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


def _damaged(path: Path, what: str, err: BaseException) -> DamagedFileError:
    detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return DamagedFileError(
        f"{path} is damaged or not a saved model file: expected {what}, but torch cannot "
        f"read it ({type(err).__name__}: {detail}). Save the model again or copy the "
        "directory again (a truncated copy or download gives this error)"
    )


def _unsafe_globals(path: Path, allowed: tuple) -> Optional[list[str]]:
    """Globals the file needs beyond the default safe set and ``allowed``; ``None`` if unreadable."""
    try:
        needed = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # noqa: BLE001 - not a readable checkpoint: the caller reports damage
        return None
    allowed_names = {_global_name(obj) for obj in allowed}
    return sorted(name for name in needed if name not in allowed_names)


def torch_load(path: PathLike, what: str, trusted: bool = False, allowed: tuple = ()) -> Any:
    """``torch.load`` on CPU that never unpickles code unless ``trusted``.

    Untrusted: ``weights_only=True``, with ``allowed`` classes/functions added for this call.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UnsafeFileError: the file needs classes or functions outside the allowlist (named in
            the message with the opt-in); nothing from the file was run.
        DamagedFileError: the file is truncated, empty or not a torch file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: expected {what}")
    if trusted:
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as err:  # noqa: BLE001 - any reader failure means a damaged file
            raise _damaged(path, what, err) from err
    try:
        with torch.serialization.safe_globals(list(allowed)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        unsafe = _unsafe_globals(path, allowed)
        if unsafe is None:
            raise _damaged(path, what, err) from err
        needs = ", ".join(unsafe) if unsafe else "objects outside the weights-only allowlist"
        raise UnsafeFileError(
            f"refusing to load {path}: it needs {needs}, which loading only tensors, plain "
            f"containers and torch.nn building blocks does not allow (unpickling it could "
            f"run code). If you created this file or otherwise trust it, load it with "
            f"{TRUSTED_FIX}."
        ) from err
    except Exception as err:  # noqa: BLE001 - zip/EOF/OS errors of the reader
        raise _damaged(path, what, err) from err


def load_state_dict(path: PathLike) -> "dict[str, torch.Tensor]":
    """Load a plain state dict with ``torch.load(map_location="cpu", weights_only=True)``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UnsafeFileError: the file holds anything besides tensors and plain containers
            (code would run when unpickling it); it is refused, nothing is executed.
        DamagedFileError: the file is truncated or not a ``{name: Tensor}`` mapping.
    """
    what = "head weights (a plain state dict) written by save()"
    path = Path(path)
    try:
        state = torch_load(path, what)
    except UnsafeFileError as err:
        raise UnsafeFileError(
            f"{str(err).rstrip('.')}. The file is not a plain state dict: re-save the head "
            "with head.save()"
        ) from err.__cause__
    if not isinstance(state, Mapping) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()
    ):
        raise DamagedFileError(
            f"{path} is damaged or not a saved model file: it is not a plain state dict "
            f"(expected a mapping of str -> Tensor, got {type(state).__name__}); re-save the "
            "head with head.save()"
        )
    return dict(state)


# ---------------------------------------------------------------------------------------------
# Directory swap: ``save`` writes a complete model into ``.<name>.tmp-<uuid>``, then
#   1. renames the previous ``<name>`` to ``.<name>.old-<uuid>``,
#   2. renames the temp directory to ``<name>``,
#   3. moves the user's own files from the old directory into ``<name>``, deletes the old one.
# A crash between 1 and 2 leaves no ``<name>``; :func:`recover_directory` (run by ``load`` and
# by the next ``save``) finds the complete temp directory (it holds ``config.json``, written
# last) or else the old one and renames it back. A crash after 2 leaves ``<name>`` complete and
# an old sibling whose user files ``recover_directory`` moves over.

_MODEL_ENTRIES = frozenset({"config.json", "head", "encoders"})
_COMPLETE_MARKER = "config.json"


def _siblings(target: Path, tag: str) -> list[Path]:
    prefix = f".{target.name}.{tag}-"
    if not target.parent.is_dir():
        return []
    found = [
        target.parent / entry
        for entry in os.listdir(target.parent)
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


def _move_user_files(source: Path, target: Path) -> None:
    for entry in os.listdir(source):
        if entry not in _MODEL_ENTRIES and not os.path.lexists(target / entry):
            os.rename(source / entry, target / entry)


def recover_directory(target: PathLike) -> Path:
    """Finish a swap that a crash interrupted; return the directory holding the model.

    If ``target`` is missing but a complete sibling from an interrupted save exists, that
    sibling (the new save if complete, else the previous one) is renamed to ``target``. If
    it cannot be renamed (read-only parent), its path is returned so it can still be read.
    """
    target = Path(os.path.abspath(target))
    if not target.exists():
        candidates = [p for p in _siblings(target, "tmp") if _is_complete(p)]
        candidates += [p for p in _siblings(target, "old") if _is_complete(p)]
        if not candidates:
            return target
        try:
            os.rename(candidates[0], target)
            fsync_directory(target.parent)
        except FileExistsError:
            pass  # a concurrent save finished first: its result stands
        except OSError:
            return candidates[0]
    if _is_complete(target):
        for old in _siblings(target, "old"):
            try:
                _move_user_files(old, target)
                shutil.rmtree(old)
            except OSError:
                pass  # read-only or concurrently removed: nothing is lost by leaving it
    return target


@contextmanager
def atomic_directory(target: PathLike) -> Iterator[Path]:
    """Yield a temp sibling directory; on success swap it in place of ``target``.

    If the body raises, the temp directory is removed and ``target`` is left exactly as it
    was. Every file written is fsynced before the swap, so ``target`` (or, after a crash in
    the swap, the sibling :func:`recover_directory` restores) always holds one complete save.
    Entries of an existing ``target`` that are not part of a saved model are kept.
    """
    target = Path(os.path.abspath(target))
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(
            f"cannot save into {target}: it exists and is not a directory; pass a directory path"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_directory(target)
    tmp = sibling_path(target, "tmp")
    tmp.mkdir()
    try:
        yield tmp
        _fsync_tree(tmp)
        _swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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


def _swap_in(new: Path, target: Path) -> None:
    if not target.exists():
        os.rename(new, target)
        fsync_directory(target.parent)
        return
    old = sibling_path(target, "old")
    os.rename(target, old)
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(old, target)
        raise
    fsync_directory(target.parent)
    _move_user_files(old, target)
    shutil.rmtree(old, ignore_errors=True)


def existing_dir(root: PathLike, *parts: str) -> str:
    """``root/parts...`` if it is a directory, else ``FileNotFoundError`` naming both."""
    path = os.path.join(root, *parts)
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"{root} is not a complete saved SimilarityModel: {path} does not exist; save the "
            "model again"
        )
    return path


def restore_subclass(record: Any, base: type, config_path: PathLike, field: str = "class") -> type:
    """Class of a ``{"module", "class"}`` record read from ``config_path``, checked to subclass
    ``base`` (see :meth:`~quaterion_models.utils.config.ConfigFile.class_record`)."""
    return ConfigFile(config_path, {}, "a saved model config").class_record(record, base, field)
