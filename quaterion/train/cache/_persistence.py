"""Safe files for the persisted cache: atomic writes, weights-only reads, fingerprints."""

import hashlib
import json
import os
from typing import Any, Dict

import torch

from quaterion_models.utils import atomic_write

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 2


def _atomic_write(path: str, write) -> None:
    """Write through ``write(file)`` with :func:`~quaterion_models.utils.atomic_write`
    (temporary sibling, fsync, rename, fsync of the directory), creating the directory."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with atomic_write(path) as file:
        write(file)


def save_tensor_file(obj: Any, path: str) -> None:
    """``torch.save`` of tensors and plain containers, written atomically."""
    _atomic_write(path, lambda file: torch.save(obj, file))


def load_tensor_file(path: str) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``: never unpickles code."""
    return torch.load(path, map_location="cpu", weights_only=True)


def save_json(obj: Any, path: str) -> None:
    """JSON file written atomically."""
    _atomic_write(path, lambda file: file.write(json.dumps(obj, indent=2).encode("utf-8")))


def load_json(path: str) -> Any:
    """Read a JSON file."""
    with open(path, "r", encoding="utf-8") as file:
        return json.load(file)


def file_sha256(path: str) -> str:
    """Hex SHA-256 of a file's bytes (detects truncated or corrupt cache files)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def encoder_fingerprint(encoder: torch.nn.Module) -> Dict[str, str]:
    """Class path, structure (``repr``) and a SHA-256 of the state dict of ``encoder``."""
    digest = hashlib.sha256()
    for name, tensor in encoder.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode("utf-8"))
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    config = getattr(encoder, "get_config_dict", None)
    cls = type(encoder)
    return {
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "config": json.dumps(config(), sort_keys=True, default=str) if callable(config) else "",
        "structure": repr(encoder),
        "state_sha256": digest.hexdigest(),
    }


def ids_fingerprint(ids) -> str:
    """SHA-256 of a sequence of item ids (in order)."""
    digest = hashlib.sha256()
    for item_id in ids:
        digest.update(repr(item_id).encode("utf-8"))
        digest.update(b",")
    return digest.hexdigest()
