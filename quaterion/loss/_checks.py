"""Input checks shared by the losses.

Shape and dtype checks read metadata only. Checks of values (pair scores, class ids) read
CPU tensors only, and each CPU tensor once: the training loop checks a batch on the CPU
before moving it (``quaterion.train.fit_checks.check_batch_labels``), so the step itself
never waits for the device (see :func:`host_check_needed`).
"""

import math
import weakref
from numbers import Real
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor


def check_number(
    owner: str,
    name: str,
    value: object,
    *,
    minimum: Optional[float] = None,
    strict: bool = False,
) -> float:
    """Return ``float(value)`` after checking it is a finite real number above ``minimum``.

    Args:
        owner: class name used in the message.
        name: argument name used in the message.
        value: the value received.
        minimum: lower bound, ``None`` for none.
        strict: ``True`` means ``value > minimum``, ``False`` means ``value >= minimum``.

    Raises:
        TypeError: ``value`` is not a real number (``bool`` and ``None`` included).
        ValueError: ``value`` is not finite or is below the bound.
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(
            f"{owner}: {name} must be a real number, got {value!r} "
            f"({type(value).__name__}). Pass a float, e.g. {name}=1.0."
        )
    number = float(value)
    bound_ok = minimum is None or (number > minimum if strict else number >= minimum)
    if not math.isfinite(number) or not bound_ok:
        allowed = "a finite number"
        if minimum is not None:
            allowed += f" {'>' if strict else '>='} {minimum}"
        raise ValueError(f"{owner}: {name} must be {allowed}, got {value!r}.")
    return number


def check_positive_int(owner: str, name: str, value: object) -> int:
    """Return ``value`` after checking it is an ``int`` (not ``bool``) ``>= 1``.

    Raises:
        TypeError: ``value`` is not an integer.
        ValueError: ``value < 1``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{owner}: {name} must be an int >= 1, got {value!r} ({type(value).__name__})."
        )
    if value < 1:
        raise ValueError(f"{owner}: {name} must be an int >= 1, got {value!r}.")
    return value


def check_embeddings(embeddings: Tensor) -> None:
    """Raise unless ``embeddings`` is a floating ``(B, d)`` tensor."""
    if not isinstance(embeddings, Tensor) or not embeddings.is_floating_point():
        raise TypeError(
            f"`embeddings` must be a floating-point torch.Tensor of shape (B, d), got "
            f"{_describe(embeddings)}; convert it with `.float()`."
        )
    if embeddings.dim() != 2:
        raise ValueError(
            f"`embeddings` must have shape (B, d), got shape {tuple(embeddings.shape)}."
        )


def check_groups(embeddings: Tensor, groups: Tensor) -> None:
    """Raise unless ``groups`` is an integer ``(B,)`` tensor matching ``embeddings``."""
    check_embeddings(embeddings)
    _check_integer_tensor(
        "groups",
        groups,
        "(int64 group ids) of shape (B,)",
        "; pass `groups.long()` with integral ids",
        allow_bool=False,
    )
    if groups.shape != embeddings.shape[:1]:
        raise ValueError(
            f"`groups` must have shape ({embeddings.shape[0]},) to match `embeddings` "
            f"{tuple(embeddings.shape)}, got {tuple(groups.shape)}."
        )


def check_pairs(embeddings: Tensor, pairs: Tensor, labels: Optional[Tensor] = None) -> None:
    """Raise unless ``pairs`` is an integer ``(n, 2)`` tensor and ``labels`` a real ``(n,)`` one.

    ``labels=None`` skips the label check.
    """
    check_embeddings(embeddings)
    _check_integer_tensor("pairs", pairs, "of row indices with shape (n, 2)", "", allow_bool=True)
    if pairs.dim() != 2 or pairs.shape[1] != 2:
        raise ValueError(f"`pairs` must have shape (n, 2), got {tuple(pairs.shape)}.")
    if labels is None:
        return
    if not isinstance(labels, Tensor) or labels.is_complex():
        raise TypeError(
            f"`labels` must be a real-valued torch.Tensor of pair scores with shape (n,), got "
            f"{_describe(labels)}."
        )
    if labels.shape != pairs.shape[:1]:
        raise ValueError(
            f"`labels` must have shape ({pairs.shape[0]},), one score per pair, got "
            f"{tuple(labels.shape)}."
        )


# (id of a checked CPU tensor, name of the check) -> weak reference to that tensor
_CHECKED: Dict[Tuple[int, str], "weakref.ref[Tensor]"] = {}


def host_check_needed(value: object, check: str) -> bool:
    """Whether the value check named ``check`` should read ``value`` now.

    True only for a non-empty CPU tensor that has not passed this check yet: a device tensor
    would make the host wait for the device (batches are checked on the CPU before the
    transfer), and a tensor the training loop's batch check has passed is not read again
    (that check calls :func:`mark_checked`; a direct loss call always reads CPU values).
    """
    if not isinstance(value, Tensor) or value.device.type != "cpu" or value.numel() == 0:
        return False
    known = _CHECKED.get((id(value), check))
    return known is None or known() is not value


def mark_checked(value: Tensor, check: str) -> None:
    """Record that ``value`` passed the check named ``check`` (kept while ``value`` lives)."""
    key = (id(value), check)
    _CHECKED[key] = weakref.ref(value, lambda _, key=key: _CHECKED.pop(key, None))


def score_check(low: float, high: float) -> str:
    """Name of the check "every score in ``[low, high]``" for :func:`host_check_needed`."""
    return f"scores in [{low!r}, {high!r}]"


def check_scores(owner: str, labels: Tensor, low: float, high: float, mark: bool = False) -> None:
    """Raise ``ValueError`` naming the first pair whose score is NaN or outside ``[low, high]``.

    Only CPU tensors are read (see :func:`host_check_needed`): the training loop checks
    batches on the CPU before moving them (``mark=True``), and the loss does not re-read them.
    """
    check = score_check(low, high)
    if not host_check_needed(labels, check):
        return
    bad = ~((labels >= low) & (labels <= high))  # NaN compares False: caught here too
    if bool(bad.any()):
        position = int(bad.nonzero()[0, 0])
        value = labels.flatten()[position].item()
        raise ValueError(score_message(owner, low, high, position, value))
    if mark:
        mark_checked(labels, check)


RESCALE = (
    "Rescale the scores of the dataset to that range (1 = similar, 0 = unrelated) or pick a "
    "loss for your kind of scores."
)


def score_message(
    owner: str, low: float, high: float, position: int, value: float, late: str = "", fix=RESCALE
) -> str:
    """The error message for pair ``position`` of a batch whose score ``value`` is NaN or
    outside ``[low, high]`` (``late``: when and how it was found, after the batch)."""
    allowed = f"exactly {low:g}" if low == high else f"in [{low:g}, {high:g}]"
    return (
        f"{owner} takes pair scores {allowed}, but pair {position} of the batch{late} has "
        f"score {value!r}. {fix}"
    )


def check_choice(name: str, value: object, choices: dict) -> None:
    """Raise ``ValueError`` unless ``value`` is a key of ``choices`` (message lists them)."""
    if not isinstance(value, str) or value not in choices:
        valid = ", ".join(repr(k) for k in choices)
        raise ValueError(f"Unrecognized `{name}` {value!r}; expected one of {valid}.")


def attached_zero(embeddings: Tensor) -> Tensor:
    """0-dim zero of ``embeddings``' dtype/device that stays attached to the graph."""
    return embeddings.sum() * 0


def _check_integer_tensor(
    name: str, value: object, expected: str, hint: str, *, allow_bool: bool
) -> None:
    """Raise ``TypeError`` unless ``value`` is a tensor of an integer dtype."""
    is_integer = (
        isinstance(value, Tensor)
        and not value.is_floating_point()
        and not value.is_complex()
        and (allow_bool or value.dtype != torch.bool)
    )
    if not is_integer:
        raise TypeError(
            f"`{name}` must be an integer torch.Tensor {expected}, got {_describe(value)}{hint}."
        )


def _describe(value: object) -> str:
    if isinstance(value, Tensor):
        return f"a tensor of dtype {value.dtype} and shape {tuple(value.shape)}"
    return f"{type(value).__name__} {value!r:.80}"


def check_pair_rows(owner: str, pairs: object, rows: object) -> None:
    """Raise ``ValueError`` naming the first pair whose row index is outside
    ``[0, len(rows))`` (``rows``: the batch's per-row ``subgroups``). CPU tensors only,
    read before the device transfer: a negative index would silently pick a row from the
    end, and one past the end is a device-side assert on a GPU."""
    if not isinstance(pairs, Tensor) or not isinstance(rows, Tensor):
        return
    if pairs.device.type != "cpu" or pairs.numel() == 0 or rows.dim() == 0:
        return
    bad = (pairs < 0) | (pairs >= rows.shape[0])
    if bool(bad.any()):
        position = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"{owner}: pair {position} of the batch indexes rows {pairs[position].tolist()}, "
            f"but the batch has {rows.shape[0]} embedding rows; pair indices must be in "
            f"[0, {rows.shape[0]}). Build batches with PairsSimilarityDataLoader, or fix the "
            "custom collate's `pairs`."
        )
