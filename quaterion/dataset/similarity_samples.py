"""Similarity samples: the items a similarity dataset yields."""

from dataclasses import dataclass
from typing import Any, Union


@dataclass
class SimilarityPairSample:
    """Two objects and how similar they are.

    Args:
        obj_a: first object (anything the encoders' collate functions accept).
        obj_b: second object.
        score: similarity of the two, ``1.0`` similar, ``0.0`` unrelated; fractions allowed.
        subgroup: objects of pairs with *different* subgroups may serve as negatives of each
            other; with the default (all ``0``) no cross-pair negatives exist.

    Example:
        ``SimilarityPairSample(obj_a="cheesecake", obj_b="muffin", score=0.9, subgroup=1)``
    """

    obj_a: Any
    obj_b: Any
    score: float = 1.0
    subgroup: int = 0


@dataclass
class SimilarityGroupSample:
    """One object and the integer id of its group (class); objects of a group match.

    Args:
        obj: the object.
        group: integer group id (Python/numpy int or 0-d integer tensor).

    Example:
        ``SimilarityGroupSample(obj="orange", group=0)``
    """

    obj: Any
    group: int


SimilaritySample = Union[SimilarityGroupSample, SimilarityPairSample]
