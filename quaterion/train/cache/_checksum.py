"""Checksums of stored arrays: computed while writing, verified in a streaming pass."""

import hashlib
import json
from typing import Sequence

import torch


def file_sha256(path: str) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks (never the whole file in memory)."""
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def rows_sha256(dtype: torch.dtype, shape: Sequence[int], bytes_sha256: str) -> str:
    """Checksum of a raw rows file as it is read: its dtype and shape bound to its bytes, so a
    forged dtype or shape over the same bytes does not match."""
    record = [str(dtype).replace("torch.", ""), [int(n) for n in shape], bytes_sha256]
    return hashlib.sha256(json.dumps(record).encode("utf-8")).hexdigest()


def floating_dtype(name: object, source: str) -> torch.dtype:
    """The floating torch dtype called ``name``; a ``ValueError`` naming ``source`` otherwise
    (rows are always floating: any other dtype is a damaged or forged file)."""
    dtype = getattr(torch, name, None) if isinstance(name, str) else None
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"{source}: rows dtype {name!r} is not a floating dtype (damaged file)")
    return dtype
