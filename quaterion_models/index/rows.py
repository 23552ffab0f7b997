"""Checks of one write call (ids, payloads, vectors), all done before anything is written.

Every message names the offending row, so a caller can find it in their own data.
"""

import math
import sys
import uuid
from collections.abc import Sequence
from typing import Any, Optional

import numpy as np

from quaterion_models.index.backend import PointId

#: Qdrant stores payload integers as signed 64-bit.
_INT64 = (-(2**63), 2**63 - 1)


def check_ids(ids: Optional[Sequence[Any]], n: int) -> list[PointId]:
    """``n`` valid, distinct point ids (random UUID strings when ``ids`` is ``None``)."""
    if ids is None:
        return [str(uuid.uuid4()) for _ in range(n)]
    ids = list(ids)
    _check_length("ids", ids, n)
    if _distinct_small_ints(ids):
        return ids
    seen: dict[Any, int] = {}
    for row, point_id in enumerate(ids):
        key = _id_key(point_id, row)
        if key in seen:
            raise ValueError(
                f"ids[{row}] = {point_id!r} repeats ids[{seen[key]}]: ids must be unique within "
                "one call (a repeated id would silently overwrite the earlier row)"
            )
        seen[key] = row
    return ids


def check_point_ids(ids: Sequence[Any]) -> list[PointId]:
    """``ids`` as a list, each a valid point id (repeats allowed: for reads and deletes)."""
    ids = list(ids)
    for row, point_id in enumerate(ids):
        _id_key(point_id, row)
    return ids


def _distinct_small_ints(ids: list) -> bool:
    """Fast path for a large call: every id a distinct int in ``[0, 2**63)``."""
    if not all(type(point_id) is int for point_id in ids):
        return False
    try:
        values = np.fromiter(ids, dtype=np.int64, count=len(ids))
    except OverflowError:
        return False
    values.sort()
    return bool(values.size == 0 or (values[0] >= 0 and (values[1:] != values[:-1]).all()))


def _id_key(point_id: Any, row: int) -> tuple[str, Any]:
    """What Qdrant compares: the int, or the UUID value (case and dashes do not matter)."""
    if isinstance(point_id, bool) or not isinstance(point_id, (int, str)):
        raise TypeError(
            f"ids[{row}] must be an int >= 0 or a UUID string, got {type(point_id).__name__} "
            f"({point_id!r}); convert numpy ids with .tolist()"
        )
    if isinstance(point_id, int):
        if not 0 <= point_id < 2**64:
            raise ValueError(f"ids[{row}] must be an int in [0, 2**64), got {point_id}")
        return ("int", point_id)
    try:
        return ("uuid", uuid.UUID(point_id))
    except ValueError:
        raise ValueError(
            f"ids[{row}]: string ids must be UUIDs (Qdrant's rule), got {point_id!r}; keep "
            "your own key in the payload"
        ) from None


def check_payloads(payloads: Optional[Sequence[Any]], n: int) -> list[Optional[dict]]:
    """``n`` payloads, each ``None`` or a JSON object that reads back exactly as given."""
    if payloads is None:
        return [None] * n
    payloads = list(payloads)
    _check_length("payloads", payloads, n)
    for row, payload in enumerate(payloads):
        if payload is not None and not isinstance(payload, dict):
            raise TypeError(f"payloads[{row}] must be a dict or None, got {type(payload).__name__}")
        if payload is not None:
            try:
                _check_json(payload, f"payloads[{row}]")
            except RecursionError:
                raise ValueError(
                    f"payloads[{row}] is nested too deeply to be stored as JSON (over "
                    f"{sys.getrecursionlimit()} levels, or it contains itself); flatten it"
                ) from None
    return payloads


def _check_json(value: Any, where: str) -> None:
    """Only what JSON stores without change: dict with str keys, list, str, bool, None,
    int64 and finite floats."""
    if value is None or isinstance(value, (str, bool)):
        return
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise ValueError(f"{where} = {value} does not fit a 64-bit payload integer")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} = {value} is not valid JSON (NaN/inf); store null or a str")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(
                    f"{where} has key {key!r} of type {type(key).__name__}: payload keys must be "
                    "str (JSON would turn it into a string)"
                )
            _check_json(item, f"{where}[{key!r}]")
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_json(item, f"{where}[{i}]")
        return
    raise TypeError(
        f"{where} is a {type(value).__name__}, which is not JSON: payloads hold dicts (str keys), "
        "lists, str, int, float, bool and None; convert it (e.g. a set or tuple to a list, a "
        "tensor or array with .tolist(), a numpy scalar with .item())"
    )


def check_finite(vectors: np.ndarray, what: str, outcome: str = "nothing was written") -> None:
    """``ValueError`` naming the first row with NaN or inf (and ``outcome``: what the refused
    call did not do)."""
    step = max(1, 2**22 // max(vectors.shape[1], 1))  # rows per chunk: a 4 MB mask at most
    chunks = [np.isfinite(vectors[i : i + step]).all(axis=1) for i in range(0, len(vectors), step)]
    finite = np.concatenate(chunks) if chunks else np.ones(0, dtype=bool)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValueError(
            f"{what} contain NaN or inf in {bad.size} of {len(vectors)} rows (first: row "
            f"{bad[0]}); {outcome}. Check the model's output for those inputs"
        )


def _check_length(name: str, values: list, n: int) -> None:
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} entries for {n} objects")
