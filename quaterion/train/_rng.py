"""Random-number state kept in checkpoints, so a resumed run draws the same shuffles.

A checkpoint needs the state as data, which ``pytorch_lightning.utilities.seed.isolate_rng``
(used wherever state is only to be kept around a block) does not expose publicly.
"""

import random
from typing import Any, Dict

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
