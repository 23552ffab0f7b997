"""Cut a collated training batch into consecutive mini-batches of records.

The gradient cache encodes a batch piece by piece, so it must cut the model's input
``{"data": {encoder_key: collated}, "meta": meta}`` by record. Collated inputs are cut by
these rules, applied recursively:

* a tensor (or numpy array) whose first dimension is the batch size: rows ``start:stop``;
* the store rows of a cached encoder (:class:`HostRows`): rows ``start:stop``;
* a :class:`~quaterion_models.encoders.SwitchEncoder` batch (``{"ordering", "batches"}``):
  each option keeps its records from ``start:stop`` (positions are renumbered);
* a list or tuple of batch-size length: items ``start:stop`` (one per record), unless
  every item is a tensor with the batch size first (e.g. a collate's ``(ids, mask)`` for a
  batch of 2): such a list or tuple is a structure, cut item by item;
* another mapping, list or tuple: each value cut by these rules;
* ``None``, strings, numbers and 0-d tensors or arrays: kept (not per record).

Anything else, such as a tensor whose first dimension is not the batch size, is an error
naming the encoder: the collate function of such an encoder must put the records first.
"""

from bisect import bisect_left
from typing import Any, Iterator, Mapping, Sequence, Tuple

import numpy as np
from torch import Tensor

from quaterion.train.cache.host_rows import HostRows

_SWITCH_KEYS = frozenset({"ordering", "batches"})


def batch_size_of(features: Mapping[str, Any]) -> int:
    """Number of records in a model input ``{"data": ..., "meta": ...}``.

    Raises:
        ValueError: no per-record value tells the size (no meta list, no tensor input).
    """
    meta = features.get("meta")
    if isinstance(meta, (list, tuple)):
        return len(meta)
    for value in features.get("data", {}).values():
        if isinstance(value, Tensor) and value.dim() > 0:
            return value.shape[0]
        if isinstance(value, HostRows):
            return len(value)
    raise ValueError(
        "gradient cache: cannot tell the number of records of the batch (its meta is not a "
        "list and no encoder input is a tensor); keep the default TrainCollator meta"
    )


def iter_mini_batches(
    features: Mapping[str, Any], mini_batch_size: int
) -> Iterator[Tuple[int, int, dict]]:
    """Yield ``(start, stop, mini_features)`` covering the batch in order."""
    size = batch_size_of(features)
    for start in range(0, size, mini_batch_size):
        stop = min(start + mini_batch_size, size)
        yield start, stop, slice_features(features, start, stop, size)


def slice_features(features: Mapping[str, Any], start: int, stop: int, size: int) -> dict:
    """Records ``start:stop`` of a model input of ``size`` records."""
    data = {
        key: slice_records(value, start, stop, size, f"encoder {key!r}")
        for key, value in features["data"].items()
    }
    meta = slice_records(features.get("meta"), start, stop, size, "the batch meta")
    return {**features, "data": data, "meta": meta}


def slice_records(value: Any, start: int, stop: int, size: int, where: str) -> Any:
    """Records ``start:stop`` of one collated value (see the module rules)."""
    if value is None or isinstance(value, (str, bytes, int, float, bool, np.generic)):
        return value
    if isinstance(value, (Tensor, np.ndarray)):
        if value.ndim == 0:
            return value
        if value.shape[0] != size:
            raise ValueError(
                f"gradient cache: the input of {where} holds a tensor of shape "
                f"{tuple(value.shape)} whose first dimension is not the batch size {size}; "
                "its collate function must put one row per record first to be cut into "
                "mini-batches"
            )
        return value[start:stop]
    if isinstance(value, HostRows):
        return HostRows(value.rows[start:stop], value.device)
    if isinstance(value, Mapping):
        if set(value) == _SWITCH_KEYS:
            return _slice_switch(value, start, stop, size, where)
        sliced = {key: slice_records(item, start, stop, size, where) for key, item in value.items()}
        return _rebuild(value, sliced)
    if isinstance(value, (list, tuple)):
        if len(value) == size and not _all_batch_rows(value, size):
            return value[start:stop]
        cut = [slice_records(item, start, stop, size, where) for item in value]
        if isinstance(value, tuple) and type(value) is not tuple:  # a named tuple
            return type(value)(*cut)
        return type(value)(cut)
    raise ValueError(
        f"gradient cache: the input of {where} contains a {type(value).__name__}, which "
        "cannot be cut into mini-batches; collate records into tensors, lists, tuples or dicts"
    )


def _all_batch_rows(items: Sequence[Any], size: int) -> bool:
    """Every item a tensor (or array) with ``size`` rows first: a structure, not ``size``
    records."""
    return all(
        isinstance(item, (Tensor, np.ndarray)) and item.ndim > 0 and item.shape[0] == size
        for item in items
    )


def _slice_switch(value: Mapping[str, Any], start: int, stop: int, size: int, where: str) -> dict:
    """A SwitchEncoder batch: option positions are ascending, so each option keeps a run."""
    ordering, batches = {}, {}
    for key, positions in value["ordering"].items():
        first, last = bisect_left(positions, start), bisect_left(positions, stop)
        ordering[key] = [position - start for position in positions[first:last]]
        if last > first:
            batches[key] = slice_records(
                value["batches"][key], first, last, len(positions), f"{where} option {key!r}"
            )
    return {"ordering": ordering, "batches": batches}


def _rebuild(original: Mapping[str, Any], sliced: dict) -> Any:
    """Same mapping type when it can be built from a dict (e.g. a tokenizer's BatchEncoding)."""
    if type(original) is dict:
        return sliced
    try:
        return type(original)(sliced)
    except TypeError:
        return sliced
