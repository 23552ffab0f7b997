"""Random-number state kept in checkpoints, so a resumed run draws the same shuffles.

A checkpoint needs the state as data, which ``pytorch_lightning.utilities.seed.isolate_rng``
(used wherever state is only to be kept around a block) does not expose publicly.
"""

import random
from typing import Any, Dict, Optional

import numpy as np
import torch

from quaterion.dataset.random_state import random_state_from_dict, random_state_to_dict


def capture_rng() -> Dict[str, Any]:
    """Host RNG states (torch CPU, ``random``, NumPy) as plain, weights-only-loadable data."""
    return {
        "torch": torch.get_rng_state(),
        "python": list(random.getstate()[1]) + [random.getstate()[0]],
        "python_gauss": random.getstate()[2],
        "numpy": random_state_to_dict(np.random),
    }


def restore_rng(state: Dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    *internal, version = state["python"]
    random.setstate((version, tuple(internal), state["python_gauss"]))
    np.random.set_state(random_state_from_dict(state["numpy"]))


RNG_KEY = "quaterion_rng_state"
EPOCH_RNG_KEY = "quaterion_epoch_rng_state"


class ResumedRng:
    """The host random state of a fit at the two points a resume needs: when the epoch in
    progress started (its loader's iterator, and its workers, drew their seeds from it)
    and when the checkpoint was written.

    A fit resumed from a checkpoint written at an epoch's end restores the checkpoint's
    state at once. One resumed inside an epoch restores the epoch's start state before the
    loader's iterator is made (so it draws the seeds of the uninterrupted fit, and a
    replaying loader reads the batches it skips with the random numbers they had), then
    the checkpoint's state at train start.
    """

    def __init__(self) -> None:
        self.epoch_start: Optional[Dict[str, Any]] = None
        self._first_epoch = False  # the fit's first epoch: its iterator is made before
        self._inside_epoch = False  # resumed inside an epoch, which does not start again
        self._at_train_start: Optional[Dict[str, Any]] = None

    def fit_started(self) -> None:
        """At fit start (after a resumed fit's :meth:`load`), before the training loader's
        first iterator is made."""
        self.epoch_start = capture_rng()
        self._first_epoch, self._inside_epoch = not self._inside_epoch, False

    def epoch_started(self) -> None:
        """At an epoch's start; later epochs make their iterator after it."""
        if self._first_epoch:
            self._first_epoch = False
        else:
            self.epoch_start = capture_rng()

    def save(self, checkpoint: Dict[str, Any]) -> None:
        checkpoint[RNG_KEY] = capture_rng()
        if self.epoch_start is not None:
            checkpoint[EPOCH_RNG_KEY] = self.epoch_start

    def load(self, checkpoint: Dict[str, Any], inside_epoch: bool) -> None:
        """When a fit resumes from ``checkpoint`` (written ``inside_epoch`` or not)."""
        self._at_train_start, self._inside_epoch = None, inside_epoch
        if RNG_KEY not in checkpoint:
            return
        if not inside_epoch:
            restore_rng(checkpoint[RNG_KEY])
            return
        if EPOCH_RNG_KEY in checkpoint:
            restore_rng(checkpoint[EPOCH_RNG_KEY])
        self._at_train_start = checkpoint[RNG_KEY]

    def train_started(self, resumed: bool) -> None:
        """At train start: the checkpoint's state of a fit ``resumed`` inside an epoch."""
        state, self._at_train_start = self._at_train_start, None
        if state is not None and resumed:
            restore_rng(state)
