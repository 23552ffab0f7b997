"""Typing aliases shared by encoders, heads and :class:`~quaterion_models.SimilarityModel`."""

from typing import Any, Callable, Dict, List, Tuple, Union

from torch import Tensor

#: Whatever a collate function produces and an encoder consumes.
TensorInterchange = Union[
    Tensor,
    Tuple[Tensor],
    List[Tensor],
    Dict[str, Tensor],
    Dict[str, dict],
    Any,
]

#: Raw records -> encoder input (``List[Any] -> TensorInterchange``).
CollateFnType = Callable[[List[Any]], TensorInterchange]

#: Raw records -> one dict of meta information per record.
MetaExtractorFnType = Callable[[List[Any]], List[dict]]

__all__ = ["TensorInterchange", "CollateFnType", "MetaExtractorFnType"]
