"""The batch order of a data loader as a checkpoint entry (Lightning's stateful loaders).

Lightning saves ``state_dict()`` of every training loader that has ``state_dict`` and
``load_state_dict`` in its checkpoints and hands it back to ``load_state_dict`` when a fit
resumes. :class:`BatchOrderState` gives a loader that protocol: its state is that of its
batch sampler (``None`` for a batch sampler that keeps none, such as torch's
``BatchSampler``), so every such loader writes one entry whatever its sampler.
"""

import warnings
from typing import Any, Dict, Optional


def keeps_state(batch_sampler: Any) -> bool:
    """Whether ``batch_sampler`` has ``state_dict`` and ``load_state_dict``."""
    return callable(getattr(batch_sampler, "state_dict", None)) and callable(
        getattr(batch_sampler, "load_state_dict", None)
    )


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
    loader's batch sampler (see :func:`batch_order_state`)."""

    batch_sampler: Any

    def state_dict(self) -> Dict[str, Any]:
        """``{"batch_sampler": state or None}``: the batch sampler's ``state_dict()``,
        ``None`` when it keeps no state."""
        return batch_order_state(self.batch_sampler)

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restore the batch sampler from :meth:`state_dict`'s output (warns when one of the
        two has a sampler state and the other has none)."""
        load_batch_order(self.batch_sampler, state_dict, type(self).__name__)
