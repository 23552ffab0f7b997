"""Distances between embeddings, selected by the :class:`Distance` enum."""

from enum import StrEnum
from typing import Union

from quaterion.distances.base_distance import BaseDistance
from quaterion.distances.cosine import Cosine
from quaterion.distances.dot_product import DotProduct
from quaterion.distances.euclidean import Euclidean
from quaterion.distances.manhattan import Manhattan

__all__ = ["Distance", "BaseDistance", "Cosine", "DotProduct", "Euclidean", "Manhattan"]


class Distance(StrEnum):
    """Name of a distance; formats, prints and compares as its value (``"cosine"``)."""

    EUCLIDEAN = "euclidean"
    COSINE = "cosine"
    DOT_PRODUCT = "dot_product"
    MANHATTAN = "manhattan"

    @staticmethod
    def get_by_name(name: Union["Distance", str]) -> type[BaseDistance]:
        """Return the distance **class** for a member or its string value.

        Raises:
            ValueError: ``name`` is not one of the four valid names.
        """
        try:
            member = Distance(name)
        except ValueError:
            valid = ", ".join(repr(m.value) for m in Distance)
            raise ValueError(
                f"Unknown distance_metric_name {name!r}; expected a Distance member or "
                f"one of {valid}."
            ) from None
        return _DISTANCES[member]


_DISTANCES: dict[Distance, type[BaseDistance]] = {
    Distance.EUCLIDEAN: Euclidean,
    Distance.COSINE: Cosine,
    Distance.DOT_PRODUCT: DotProduct,
    Distance.MANHATTAN: Manhattan,
}
