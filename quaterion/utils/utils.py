"""Public helper functions (re-exported from topic modules)."""

from quaterion.utils._batching import iter_by_batch
from quaterion.utils._dtypes import info_value_of_dtype, max_value_of_dtype, min_value_of_dtype
from quaterion.utils._masks import (
    get_anchor_negative_mask,
    get_anchor_positive_mask,
    get_masked_maximum,
    get_masked_minimum,
    get_triplet_mask,
)
from quaterion.utils._norms import l2_norm

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
    "iter_by_batch",
]
