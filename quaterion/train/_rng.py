"""Random-number state kept in checkpoints, so a resumed run draws the same shuffles.

A checkpoint needs the state as data, which ``pytorch_lightning.utilities.seed.isolate_rng``
(used wherever state is only to be kept around a block) does not expose publicly.
"""

import random
from typing import Any, Dict

import numpy as np
import torch


def capture_rng() -> Dict[str, Any]:
    """Host RNG states (torch CPU, ``random``, NumPy) as plain, weights-only-loadable data."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "python": list(random.getstate()[1]) + [random.getstate()[0]],
        "python_gauss": random.getstate()[2],
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "gauss": float(np_state[4]),
        },
    }


def restore_rng(state: Dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    *internal, version = state["python"]
    random.setstate((version, tuple(internal), state["python_gauss"]))
    numpy = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy["keys"].numpy().astype(np.uint32),
            numpy["pos"],
            numpy["has_gauss"],
            numpy["gauss"],
        )
    )
