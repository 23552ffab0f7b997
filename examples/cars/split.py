"""Class-disjoint train/test split of Stanford Cars, cached on disk keyed by source and seed.

The cached file is checked before it is trusted: it records the seed, the data source and a
digest of every item's label, and it is recomputed (with a message) when any of them differ.
It is written with ``torch.save`` and read with ``torch.load(weights_only=True)`` (tensors and
plain containers only: a file carrying code is refused, never run), and its two index tensors
must together be a permutation of the items, so a damaged or tampered file is recomputed.
"""

import hashlib
import os
import sys
from typing import Optional, Tuple

import numpy as np
import torch

from quaterion_models.utils import atomic_write

_FORMAT = 1


def keyed_split_path(split_cache_path: str, source: str, seed: int) -> str:
    """``split_cache.pkl`` stays as is for real data with seed 42; otherwise the source and
    seed are added to the name (``split_cache_synthetic_seed42.pkl``)."""
    if source == "real" and seed == 42:
        return split_cache_path
    root, ext = os.path.splitext(split_cache_path)
    return f"{root}_{source}_seed{seed}{ext}"


def split_by_class(
    labels: np.ndarray, num_classes: int, seed: int
) -> Tuple[np.ndarray, np.ndarray]:
    """Pick ``num_classes // 2`` train classes with ``np.random.default_rng(seed)``.

    Returns:
        ``(train_indices, test_indices)``, int64 arrays of item positions whose label is /
        is not a train class; the two sides share no class.
    """
    train_classes = np.random.default_rng(seed).choice(num_classes, num_classes // 2, replace=False)
    in_train = np.isin(labels, train_classes)
    return np.flatnonzero(in_train).astype(np.int64), np.flatnonzero(~in_train).astype(np.int64)


def _labels_digest(labels: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(labels, dtype=np.int64).tobytes()).hexdigest()


def _read_valid(path: str, expected: dict) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is recomputed
        print(f"Split cache {path} is unreadable ({exc}); recomputing it.", file=sys.stderr)
        return None
    if not isinstance(record, dict):
        print(f"Split cache {path} is not a split record; recomputing it.", file=sys.stderr)
        return None
    mismatched = [key for key, value in expected.items() if record.get(key) != value]
    if mismatched:
        print(
            f"Split cache {path} was made for other data ({', '.join(mismatched)} differ); "
            "recomputing it.",
            file=sys.stderr,
        )
        return None
    indices = _checked_indices(record, expected["num_items"])
    if indices is None:
        print(f"Split cache {path} holds invalid indices; recomputing it.", file=sys.stderr)
    return indices


def _checked_indices(record: dict, num_items: int) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """The two index arrays if together they are a permutation of ``range(num_items)``."""
    parts = [record.get("train_indices"), record.get("test_indices")]
    if not all(
        isinstance(part, torch.Tensor) and part.dtype == torch.int64 and part.dim() == 1
        for part in parts
    ):
        return None
    if not torch.equal(torch.cat(parts).sort().values, torch.arange(num_items)):
        return None
    return parts[0].numpy(), parts[1].numpy()


def load_or_create_split(
    path: Optional[str], labels: np.ndarray, num_classes: int, seed: int, source: str
) -> Tuple[np.ndarray, np.ndarray]:
    """Return the split from ``path`` when it matches ``labels``/``seed``/``source``, else
    compute it with :func:`split_by_class` and (if ``path``) write it atomically."""
    labels = np.asarray(labels, dtype=np.int64)
    expected = {
        "format": _FORMAT,
        "seed": int(seed),
        "source": source,
        "num_classes": int(num_classes),
        "num_items": int(len(labels)),
        "labels_sha256": _labels_digest(labels),
    }
    if path and os.path.isfile(path):
        cached = _read_valid(path, expected)
        if cached is not None:
            return cached
    train_idx, test_idx = split_by_class(labels, num_classes, seed)
    if path:
        record = {
            **expected,
            "train_indices": torch.from_numpy(train_idx),
            "test_indices": torch.from_numpy(test_idx),
        }
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with atomic_write(path) as file:
            torch.save(record, file)
    return train_idx, test_idx
