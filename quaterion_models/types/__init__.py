"""Typing aliases shared by encoders, heads and :class:`~quaterion_models.SimilarityModel`."""

from collections.abc import Callable
from typing import Any, Union

from torch import Tensor

#: Whatever a collate function produces and an encoder consumes.
TensorInterchange = Union[
    Tensor,
    tuple[Tensor],
    list[Tensor],
    dict[str, Tensor],
    dict[str, dict],
    Any,
]

#: Raw records -> encoder input (``List[Any] -> TensorInterchange``).
CollateFnType = Callable[[list[Any]], TensorInterchange]

#: Raw records -> one dict of meta information per record.
MetaExtractorFnType = Callable[[list[Any]], list[dict]]

__all__ = ["CollateFnType", "MetaExtractorFnType", "TensorInterchange"]
