"""Helpers shared by losses, training and evaluation (no Lightning import)."""
# ruff: noqa: F401  (the names below are re-exported through the computed __all__)

from quaterion.utils import utils
from quaterion.utils.utils import (
    get_anchor_negative_mask,
    get_anchor_positive_mask,
    get_masked_maximum,
    get_masked_minimum,
    get_triplet_mask,
    info_value_of_dtype,
    l2_norm,
    max_value_of_dtype,
    min_value_of_dtype,
)

# Everything public in quaterion.utils.utils except iter_by_batch (upstream's layout).
__all__ = [name for name in utils.__all__ if name != "iter_by_batch"]
