"""File helpers shared by both packages: JSON and torch files, safe weight loading, crash-safe
directory swap."""

import functools
import json
import os
import pickle
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from quaterion_models.utils.atomic import PathLike, atomic_write
from quaterion_models.utils.config import ConfigFile
from quaterion_models.utils.config import read_json as read_json
from quaterion_models.utils.directory_swap import atomic_directory as atomic_directory
from quaterion_models.utils.directory_swap import recover_directory as recover_directory
from quaterion_models.utils.errors import DamagedFileError, UnsafeFileError
from quaterion_models.utils.trust import is_loading_trusted

TRUSTED_FIX = "SimilarityModel.load(path, trusted=True)"


def write_json(path: PathLike, data: Any) -> None:
    """Atomically write ``data`` as JSON (indent 2, UTF-8)."""
    with atomic_write(path, "w") as file:
        json.dump(data, file, indent=2)


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


def _is_legacy_with_code(path: Path, err: Exception) -> bool:
    """Whether a weights-only load failed on a whole file of torch's legacy format that
    pickles ``nn.Module`` classes (their source is stored as a persistent id, which the
    weights-only unpickler refuses), rather than on a damaged one."""
    return not zipfile.is_zipfile(path) and "persistent_load" in str(err)


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
        if unsafe is None and _is_legacy_with_code(path, err):
            raise UnsafeFileError(
                f"refusing to load {path}: it is in torch's legacy (pre-1.6, non-zip) format "
                "and stores pickled module classes, which only a full unpickle reads (it could "
                f"run code). If you created this file or otherwise trust it, load it with "
                f"{TRUSTED_FIX}, then save the model again to write the current format."
            ) from err
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
    meta = next((key for key, value in state.items() if value.is_meta), None)
    if meta is not None:
        raise DamagedFileError(
            f"{path} holds no weights: tensor {meta!r} was saved from the meta device (a "
            "model built without values and never loaded). Save the model again after "
            "loading or training its weights"
        )
    check_weight_values(state, path)
    return dict(state)


def check_weight_values(
    state: "Mapping[str, torch.Tensor]", path: PathLike, trusted: Optional[bool] = None
) -> None:
    """Refuse weights no trained head holds, naming the tensor and the fix.

    * A complex tensor: every head of ours is real, and copying it into a real parameter
      would drop the imaginary part (torch only warns). Always refused.
    * A floating tensor holding NaN or inf (hand-edited or saved from a diverged run): the
      head would encode every input to NaN. Refused unless loading is trusted
      (``SimilarityModel.load(path, trusted=True)`` or
      :func:`~quaterion_models.utils.trusted_loading`; ``trusted`` overrides it), which
      loads them as they are.

    Raises:
        DamagedFileError: one of the above; the message names ``path`` and the tensor.
    """
    for name, value in state.items():
        if value.is_complex():
            raise DamagedFileError(
                f"{path} holds complex weights: tensor {name!r} is {value.dtype}, but heads "
                "have real weights and loading would silently drop the imaginary part. The "
                "file was edited or written by other code; save the model again"
            )
    if is_loading_trusted(trusted):
        return
    found = first_non_finite(state)
    if found is not None:
        raise DamagedFileError(
            f"{path} holds non-finite weights: {found}, so the model would encode every input "
            "to NaN (edited, or saved from a diverged run). Save the model again from finite "
            f"weights, or load it as it is with {TRUSTED_FIX}"
        )


def first_non_finite(state: "Mapping[str, torch.Tensor]") -> Optional[str]:
    """``"tensor 'name' has n NaN or inf values of m"`` for the first floating tensor of
    ``state`` holding any, else ``None``."""
    for name, value in state.items():
        if value.is_floating_point() and value.numel():
            bad = int((~torch.isfinite(value)).sum())
            if bad:
                return f"tensor {name!r} has {bad} NaN or inf values of {value.numel()}"
    return None


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
