"""Public helper functions: group masks, masked reductions, dtype limits, norms, batching."""

import numbers
from collections.abc import Iterable, Iterator
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm


def iter_by_batch(
    sequence: Iterable[Any], batch_size: int, log_progress: bool = True
) -> Iterator[list[Any]]:
    """Yield lists of up to ``batch_size`` items of ``sequence`` (the last one may be short).

    Indexable sequences (``sequence[0]`` works) are read by index; anything else whose probe
    raises ``AttributeError``, ``NotImplementedError`` or ``IndexError`` (empty list,
    ``IterableDataset``, generator) is iterated. Empty input yields nothing.

    Args:
        sequence: list, map-style dataset, iterator or iterable.
        batch_size: maximum length of every yielded list.
        log_progress: wrap the iteration in ``tqdm``.

    Raises:
        TypeError: ``batch_size`` is not an integer (a ``bool`` included).
        ValueError: ``batch_size`` is below 1.
    """
    batch_size = _positive_batch_size(batch_size)
    try:
        sequence.__getitem__(0)  # type: ignore[attr-defined]
    except (AttributeError, NotImplementedError, IndexError):
        yield from _iter_chunks(sequence, batch_size, log_progress)
        return
    size = len(sequence)  # type: ignore[arg-type]
    step = min(batch_size, size)
    starts = range(0, size, step)
    for start in tqdm(starts) if log_progress else starts:
        yield [sequence[i] for i in range(start, min(start + step, size))]  # type: ignore[index]


def _positive_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
        raise TypeError(
            f"iter_by_batch: batch_size must be a positive int, got "
            f"{type(batch_size).__name__} {batch_size!r}"
        )
    if batch_size < 1:
        raise ValueError(
            f"iter_by_batch: batch_size must be a positive int, got {batch_size}; pass the "
            "number of items per yielded list"
        )
    return int(batch_size)


def _iter_chunks(iterable: Iterable[Any], batch_size: int, log_progress: bool) -> Iterator[list]:
    batch: list[Any] = []
    for item in tqdm(iterable) if log_progress else iterable:
        batch.append(item)
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def info_value_of_dtype(dtype: torch.dtype) -> Union[torch.finfo, torch.iinfo]:
    """Return ``torch.finfo`` for floating dtypes and ``torch.iinfo`` for integer ones.

    Raises:
        TypeError: for ``torch.bool``, which has no numeric limits.
    """
    if dtype == torch.bool:
        raise TypeError("Does not support torch.bool")
    if dtype.is_floating_point:
        return torch.finfo(dtype)
    return torch.iinfo(dtype)


def min_value_of_dtype(dtype: torch.dtype) -> Union[int, float]:
    """Smallest finite value representable by ``dtype`` (``finfo.min`` / ``iinfo.min``)."""
    return info_value_of_dtype(dtype).min


def max_value_of_dtype(dtype: torch.dtype) -> Union[int, float]:
    """Largest finite value representable by ``dtype`` (``finfo.max`` / ``iinfo.max``)."""
    return info_value_of_dtype(dtype).max


def get_triplet_mask(labels: Tensor) -> Tensor:
    """Valid-triplet mask ``bool (B, B, B)`` on ``labels.device``.

    ``m[i, j, k] = i != j and i != k and j != k and labels[i] == labels[j]
    and labels[i] != labels[k]``. Memory is ``B^3``: meant for small batches (no built-in loss calls it).

    Args:
        labels: ``(B,)`` group ids.
    """
    n = labels.shape[0]
    not_eye = ~torch.eye(n, dtype=torch.bool, device=labels.device)
    distinct = not_eye[:, :, None] & not_eye[:, None, :] & not_eye[None, :, :]
    same = labels[:, None] == labels[None, :]
    valid_labels = same[:, :, None] & ~same[:, None, :]
    return distinct & valid_labels


def get_anchor_positive_mask(labels_a: Tensor, labels_b: Optional[Tensor] = None) -> Tensor:
    """Same-group mask ``bool (A, B)``: ``m[i, j] = labels_a[i] == labels_b[j]``.

    ``labels_b=None`` means ``labels_a``. If ``torch.equal(labels_a, labels_b)`` (same
    shape and values) the diagonal is set to ``False``: an object is not its own positive.
    """
    labels_b = labels_a if labels_b is None else labels_b
    mask = labels_a[:, None] == labels_b[None, :]
    if labels_b is labels_a:
        return mask.fill_diagonal_(False)
    if labels_a.shape != labels_b.shape:
        return mask
    # decided on the device: reading torch.equal's answer would make the host wait
    same = (labels_a == labels_b).all()
    diagonal = torch.eye(mask.shape[0], dtype=torch.bool, device=mask.device)
    return mask & ~(diagonal & same)


def get_anchor_negative_mask(labels_a: Tensor, labels_b: Optional[Tensor] = None) -> Tensor:
    """Different-group mask ``bool (A, B)``: ``m[i, j] = labels_a[i] != labels_b[j]``."""
    labels_b = labels_a if labels_b is None else labels_b
    return labels_a[:, None] != labels_b[None, :]


def get_masked_maximum(dists: Tensor, mask: Tensor, dim: int = 1) -> Tensor:
    """Maximum of ``dists`` over ``dim`` restricted to ``mask`` (``dim`` kept as size 1).

    ``mn = min(dists, dim)``; returns ``max((dists - mn) * mask, dim) + mn``; rows with an
    empty mask give ``mn``.
    """
    mn = dists.min(dim=dim, keepdim=True).values
    return ((dists - mn) * mask).max(dim=dim, keepdim=True).values + mn


def get_masked_minimum(dists: Tensor, mask: Tensor, dim: int = 1) -> Tensor:
    """Minimum of ``dists`` over ``dim`` restricted to ``mask`` (``dim`` kept as size 1).

    ``mx = max(dists, dim)``; returns ``min((dists - mx) * mask, dim) + mx``; rows with an
    empty mask give ``mx``.
    """
    mx = dists.max(dim=dim, keepdim=True).values
    return ((dists - mx) * mask).min(dim=dim, keepdim=True).values + mx


def l2_norm(inputs: Tensor, dim: int = 0) -> Tensor:
    """L2-normalise ``inputs`` along ``dim`` (note the default ``dim=0``).

    ``F.normalize`` with an ``eps`` the dtype can hold: ``1e-12`` unless that is below the
    dtype's smallest normal number (float16: ``6.1e-5``), where it would round to 0 and a
    zero vector (e.g. a padded row of a gather) would become NaN.
    """
    return F.normalize(inputs, p=2, dim=dim, eps=max(1e-12, torch.finfo(inputs.dtype).tiny))


__all__ = [
    "get_triplet_mask",
    "get_anchor_positive_mask",
    "get_anchor_negative_mask",
    "get_masked_maximum",
    "get_masked_minimum",
    "l2_norm",
    "info_value_of_dtype",
    "min_value_of_dtype",
    "max_value_of_dtype",
    "iter_by_batch",
]
