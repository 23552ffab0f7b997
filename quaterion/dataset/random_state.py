"""NumPy generator states as plain data that a weights-only ``torch.load`` reads back."""

from typing import Any, Dict, Tuple

import numpy as np
import torch


def random_state_to_dict(generator: Any) -> Dict[str, Any]:
    """The ``MT19937`` state of ``generator`` (a ``numpy.random.RandomState``, or the
    ``numpy.random`` module for the global one) as ints, a float and an ``int64`` tensor."""
    _, keys, pos, has_gauss, gauss = generator.get_state()
    return {
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "gauss": float(gauss),
    }


def random_state_from_dict(state: Dict[str, Any]) -> Tuple[Any, ...]:
    """Inverse of :func:`random_state_to_dict`: the tuple ``RandomState.set_state`` takes."""
    keys = np.asarray(state["keys"], dtype=np.int64).astype(np.uint32)
    return "MT19937", keys, int(state["pos"]), int(state["has_gauss"]), float(state["gauss"])
