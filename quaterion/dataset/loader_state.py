"""The batch order of a data loader as a checkpoint entry (Lightning's stateful loaders).

Lightning saves ``state_dict()`` of every training loader that has ``state_dict`` and
``load_state_dict`` in its checkpoints and hands it back to ``load_state_dict`` when a fit
resumes. :class:`BatchOrderState` gives a loader that protocol: its state is that of its
batch sampler (``None`` for a batch sampler that keeps none, such as torch's
``BatchSampler``), so every such loader writes one entry whatever its sampler.
"""

import warnings
from typing import Any, Dict, Iterator, Optional

from torch.utils.data import BatchSampler, DistributedSampler, SequentialSampler


def keeps_state(batch_sampler: Any) -> bool:
    """Whether ``batch_sampler`` has ``state_dict`` and ``load_state_dict``."""
    return callable(getattr(batch_sampler, "state_dict", None)) and callable(
        getattr(batch_sampler, "load_state_dict", None)
    )


def replays_epochs(batch_sampler: Any) -> bool:
    """Whether ``batch_sampler`` draws the same batches whenever an epoch is iterated again:
    torch's ``BatchSampler`` over a ``SequentialSampler`` (``shuffle=False``) or over the
    ``DistributedSampler`` Lightning puts in under DDP (its order depends only on its seed
    and the epoch Lightning sets). The rest of such an epoch is replayed by skipping the
    batches trained already."""
    if type(batch_sampler) is not BatchSampler:
        return False
    return type(batch_sampler.sampler) in (SequentialSampler, DistributedSampler)


def batch_order_state(batch_sampler: Any) -> Dict[str, Any]:
    """The loader state of a loader drawing from ``batch_sampler``."""
    return {"batch_sampler": batch_sampler.state_dict() if keeps_state(batch_sampler) else None}


def load_batch_order(batch_sampler: Any, state: Dict[str, Any], owner: str) -> None:
    """Put ``state`` (from :func:`batch_order_state`) back into ``batch_sampler``.

    A state without a sampler state for a sampler that keeps one, or the reverse, warns:
    the batches then differ from those of the run that wrote the state.
    """
    if not isinstance(state, dict) or "batch_sampler" not in state:
        raise ValueError(
            f"{owner}.load_state_dict: expected the dict {owner}.state_dict() returns (with a "
            f"'batch_sampler' entry), got {type(state).__name__}; resume from a checkpoint "
            "written with the same kind of loader."
        )
    saved: Optional[Dict[str, Any]] = state["batch_sampler"]
    kind = type(batch_sampler).__name__
    if saved is not None and keeps_state(batch_sampler):
        batch_sampler.load_state_dict(saved)
    elif saved is not None:
        warnings.warn(
            f"{owner}: the checkpoint holds the state of a batch sampler, but this loader's "
            f"{kind} keeps none, so the state is left unused and the resumed batches are not "
            "those of the run that wrote it; resume with the batch sampler of that run.",
            stacklevel=3,
        )
    elif keeps_state(batch_sampler):
        warnings.warn(
            f"{owner}: the checkpoint holds no batch sampler state (its run drew batches from "
            f"a sampler that keeps none), so this loader's {kind} starts its order from the "
            "beginning; resume with the batch sampler of the run that wrote the checkpoint.",
            stacklevel=3,
        )


class BatchOrderState:
    """Mixin for a ``DataLoader``: Lightning's stateful-loader protocol, backed by the
    loader's batch sampler (see :func:`batch_order_state`).

    A batch sampler that keeps no state but :func:`replays_epochs` (``shuffle=False``, or
    the ``DistributedSampler`` of DDP) is replayed inside an epoch: the loader keeps the
    number of batches trained in its epoch (:meth:`note_batches_trained`, called by the
    training loop), writes it in its state, and its first iteration after
    :meth:`load_state_dict` skips that many batches (they are read and dropped, not
    trained on)."""

    batch_sampler: Any
    _loader_batches_trained: Optional[int] = None  # a replayable batch sampler's epoch
    _batches_to_skip = 0  # by the next iteration, after load_state_dict

    @property
    def batches_trained(self) -> Optional[int]:
        """Batches of the epoch in progress the training loop noted as trained (``None``
        when none is noted, or the epoch's last was taken)."""
        if hasattr(self.batch_sampler, "note_batches_trained"):
            return getattr(self.batch_sampler, "batches_trained", None)
        return self._loader_batches_trained

    def note_batches_trained(self, count: Optional[int]) -> None:
        """Note that ``count`` batches of the current epoch are trained (``None``: the
        epoch's last one was taken); forwarded to a batch sampler that takes the note."""
        note = getattr(self.batch_sampler, "note_batches_trained", None)
        if callable(note):
            note(count)
        elif replays_epochs(self.batch_sampler):
            self._loader_batches_trained = count

    def state_dict(self) -> Dict[str, Any]:
        """``{"batch_sampler": state or None}``: the batch sampler's ``state_dict()``,
        ``None`` when it keeps no state; plus ``"batches_trained"`` for a batch sampler
        that :func:`replays_epochs`, once a training loop noted them."""
        state = batch_order_state(self.batch_sampler)
        if state["batch_sampler"] is None and self._loader_batches_trained is not None:
            state["batches_trained"] = self._loader_batches_trained
            sampler = self.batch_sampler.sampler
            if isinstance(sampler, DistributedSampler):  # its order depends on the epoch
                state["sampler_epoch"] = sampler.epoch
        return state

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restore the batch sampler from :meth:`state_dict`'s output (warns when one of the
        two has a sampler state and the other has none); with ``"batches_trained"``, the
        next iteration skips that many batches (warns when this batch sampler cannot
        replay an epoch)."""
        owner = type(self).__name__
        load_batch_order(self.batch_sampler, state_dict, owner)
        skip = state_dict.get("batches_trained") or 0
        self._loader_batches_trained = None
        self._batches_to_skip = 0
        if skip and replays_epochs(self.batch_sampler):
            self._batches_to_skip = int(skip)
            if "sampler_epoch" in state_dict:  # the next iteration draws that epoch's order
                self.batch_sampler.sampler.set_epoch(int(state_dict["sampler_epoch"]))
        elif skip:
            warnings.warn(
                f"{owner}: the checkpoint was written after {skip} batches of an epoch, but "
                f"this loader's {type(self.batch_sampler).__name__} cannot replay an epoch, so "
                "the rest of that epoch trains on the first batches of a new pass; resume "
                "with the loader of the run that wrote the checkpoint.",
                stacklevel=2,
            )

    def forget_progress(self) -> None:
        """Drop the batches noted as trained and any skip a loaded state asked for (a fit
        ended: the next iteration is a whole epoch)."""
        self._loader_batches_trained = None
        self._batches_to_skip = 0

    def __iter__(self) -> Iterator[Any]:
        iterator = super().__iter__()  # type: ignore[misc]
        skip, self._batches_to_skip = self._batches_to_skip, 0
        for _ in range(skip):  # the batches the resumed checkpoint's epoch trained
            next(iterator, None)
        return iterator
