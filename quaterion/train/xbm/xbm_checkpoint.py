"""The cross-batch memory in a checkpoint: saved with it, put back when a fit resumes."""

import warnings
from typing import Any, Dict, Optional

from quaterion.train.xbm.xbm_buffer import XbmBuffer

XBM_KEY = "quaterion_xbm_memory"


def save_memory(buffer: Optional[XbmBuffer], checkpoint: Dict[str, Any]) -> None:
    """Write ``buffer``'s memory into ``checkpoint`` (nothing without XBM)."""
    if buffer is not None:
        checkpoint[XBM_KEY] = buffer.state_dict()


def restore_memory(buffer: Optional[XbmBuffer], checkpoint: Dict[str, Any]) -> None:
    """Put the memory a resumed fit's checkpoint holds back into ``buffer``, so that the
    resumed steps see the rows an uninterrupted fit sees. A checkpoint without a memory
    (written without XBM, or by an older version) or with a memory of another size leaves
    ``buffer`` empty, with a warning: the memory term then differs from an uninterrupted
    fit's until the buffer has refilled."""
    if buffer is None:
        return
    state = checkpoint.get(XBM_KEY)
    why = "it holds no cross-batch memory (written without XBM, or by an older version)"
    if state is not None:
        try:
            buffer.load_state_dict(state)
            return
        except ValueError as error:
            why = str(error)
    warnings.warn(
        f"The checkpoint this fit resumes from cannot restore the cross-batch memory: {why}. "
        "The memory starts empty, so the XBM term differs from an uninterrupted fit's until "
        "it has refilled (buffer_size rows).",
        stacklevel=3,
    )
