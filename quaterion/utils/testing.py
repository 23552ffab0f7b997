"""Count host synchronisations: the operations that make the host wait for the device.

On a GPU, a few operations cannot be queued: their result (a Python number, or a tensor
whose *size* depends on the data) has to reach the host first, so the host blocks until
the device has finished everything queued before them. Inside a training step each such
wait stops the step from overlapping data loading and kernel launches.

They dispatch to the same aten operators on every device, so they can be counted on CPU:

* ``aten._local_scalar_dense``: ``.item()``, ``bool(t)``, ``int(t)``, ``float(t)``,
  ``if t:``;
* ``aten.equal`` and ``aten.allclose``: ``torch.equal``, ``torch.allclose``;
* ``aten.bincount``: its output size is read from the data's maximum on a GPU;
* ``aten.nonzero``: ``nonzero``, ``argwhere``, ``torch.where(cond)`` (one argument);
* ``aten.masked_select``;
* ``aten._unique`` / ``_unique2`` / ``unique_consecutive`` / ``unique_dim`` /
  ``unique_dim_consecutive``: ``torch.unique``;
* ``aten.repeat_interleave`` with tensor repeats and no ``output_size``;
* ``aten.index`` / ``index_put`` / ``index_put_`` with a boolean (mask) index:
  ``t[mask]`` and ``t[mask] = v``.

Copies from the device to the host (``.cpu()``, ``.tolist()``, ``.numpy()``) also wait, but
they are no-ops for CPU tensors and cannot be seen in a CPU run.

Example:
    >>> import torch
    >>> from quaterion.utils.testing import count_host_syncs
    >>> x = torch.tensor([1.0, -2.0, 3.0])
    >>> with count_host_syncs() as syncs:
    ...     positive = x[x > 0]          # boolean index: output size depends on the data
    ...     total = float(x.sum())       # a Python number
    ...     clipped = x.clamp(min=0)     # stays on the device
    >>> syncs.total
    2
    >>> sorted(syncs.by_op.items())
    [('aten._local_scalar_dense', 1), ('aten.index', 1)]
"""

from collections import Counter
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Sequence

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["HostSyncCount", "count_host_syncs", "count_step_syncs"]

_aten = torch.ops.aten

# Operators that always wait for the device.
_ALWAYS = {
    _aten._local_scalar_dense.default: "aten._local_scalar_dense",
    _aten.equal.default: "aten.equal",
    _aten.allclose.default: "aten.allclose",
    _aten.bincount.default: "aten.bincount",
    _aten.nonzero.default: "aten.nonzero",
    _aten.masked_select.default: "aten.masked_select",
    _aten._unique.default: "aten._unique",
    _aten._unique2.default: "aten._unique2",
    _aten.unique_consecutive.default: "aten.unique_consecutive",
    _aten.unique_dim.default: "aten.unique_dim",
    _aten.unique_dim_consecutive.default: "aten.unique_dim_consecutive",
}

# Operators that wait only for some arguments (see _waits).
_INDEXING = {
    _aten.index.Tensor: "aten.index",
    _aten.index_put.default: "aten.index_put",
    _aten.index_put_.default: "aten.index_put_",
    _aten._index_put_impl_.default: "aten.index_put_",
}
_REPEAT_INTERLEAVE = {
    _aten.repeat_interleave.Tensor: "aten.repeat_interleave",
    _aten.repeat_interleave.self_Tensor: "aten.repeat_interleave",
}


def _has_mask_index(indices: Sequence[Any]) -> bool:
    return any(
        isinstance(index, torch.Tensor) and index.dtype in (torch.bool, torch.uint8)
        for index in indices
    )


def _waits(func: Any, args: tuple, kwargs: dict) -> str:
    """The counted name of ``func`` called with these arguments, or ``""``."""
    name = _ALWAYS.get(func)
    if name is not None:
        return name
    name = _INDEXING.get(func)
    if name is not None:
        indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
        return name if _has_mask_index(indices) else ""
    name = _REPEAT_INTERLEAVE.get(func)
    if name is not None:
        return name if kwargs.get("output_size") is None else ""
    return ""


class HostSyncCount:
    """What :func:`count_host_syncs` counted.

    Attributes:
        by_op: ``{"aten.<operator>": count}`` of every counted operator that ran.
    """

    def __init__(self) -> None:
        self.by_op: Dict[str, int] = Counter()

    @property
    def total(self) -> int:
        """Number of host synchronisations counted."""
        return sum(self.by_op.values())

    def __repr__(self) -> str:
        return f"HostSyncCount(total={self.total}, by_op={dict(self.by_op)})"


class _CountingMode(TorchDispatchMode):
    """Dispatch mode adding every waiting operator to a :class:`HostSyncCount`."""

    def __init__(self, count: HostSyncCount) -> None:
        super().__init__()
        self.count = count
        # an operator counted once is not counted again for what it runs inside
        self.depth = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = _waits(func, args, kwargs)
        if not name:
            return func(*args, **kwargs)
        if self.depth == 0:
            self.count.by_op[name] += 1
        self.depth += 1
        try:
            return func(*args, **kwargs)
        finally:
            self.depth -= 1


@contextmanager
def count_host_syncs() -> Iterator[HostSyncCount]:
    """Count the host synchronisations of the code run inside the ``with`` block.

    Works on any device (the count of a CPU run is the count a GPU run would make, except
    for explicit device-to-host copies). Nested blocks each count what runs inside them.

    Yields:
        a :class:`HostSyncCount`, filled as the block runs.
    """
    count = HostSyncCount()
    with _CountingMode(count):
        yield count


@contextmanager
def count_step_syncs(
    model: Any, hooks: Sequence[str] = ("training_step", "validation_step")
) -> Iterator[Dict[str, List[HostSyncCount]]]:
    """Count the host synchronisations of every call of ``model``'s step methods.

    Use it around ``Quaterion.fit`` (or ``trainer.fit``) to see what your own
    ``TrainableModel`` costs per step::

        with count_step_syncs(model) as steps:
            Quaterion.fit(model, trainer, train_loader, val_loader)
        print([count.total for count in steps["training_step"]])

    Only the step methods are counted, not what the trainer does between steps (optimizer,
    logging to the progress bar, checkpoints). The counts are kept in this process: use it
    in a one-process fit (or in each process of a ``torchrun``/``ddp`` launch); a strategy
    that pickles the model into new processes (``ddp_spawn``) cannot carry the wrappers.

    Args:
        model: any object with the ``hooks`` methods (e.g. a ``TrainableModel``).
        hooks: names of the methods to count; each call is wrapped for the duration of the
            block (an instance attribute shadowing the method, removed on exit).

    Yields:
        ``{hook: [HostSyncCount of each call, in call order]}``.
    """
    steps: Dict[str, List[HostSyncCount]] = {hook: [] for hook in hooks}
    shadowed = [hook for hook in hooks if hook in vars(model)]
    if shadowed:
        raise ValueError(
            f"{', '.join(shadowed)} already replaced on this object (nested count_step_syncs?); "
            "count each model in one block."
        )

    def counted(hook: str):
        method = getattr(model, hook)

        def step(*args: Any, **kwargs: Any) -> Any:
            with count_host_syncs() as count:
                result = method(*args, **kwargs)
            steps[hook].append(count)
            return result

        return step

    missing = [hook for hook in hooks if not callable(getattr(model, hook, None))]
    if missing:
        raise AttributeError(
            f"{type(model).__name__} has no method {', '.join(missing)} to count; pass the "
            "names of its step methods as hooks."
        )
    wrappers = {hook: counted(hook) for hook in hooks}
    for hook, wrapper in wrappers.items():
        setattr(model, hook, wrapper)
    try:
        yield steps
    finally:
        for hook in hooks:
            delattr(model, hook)
