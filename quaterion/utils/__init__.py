"""Helpers shared by losses, training and evaluation (no Lightning import)."""

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

__all__ = [
    "get_triplet_mask",
    "get_anchor_positive_mask",
    "get_anchor_negative_mask",
    "get_masked_maximum",
    "get_masked_minimum",
    "l2_norm",
    "info_value_of_dtype",
    "min_value_of_dtype",
    "max_value_of_dtype",
]
