"""SimilarityGroupDataset: adapts a ``(record, label)`` classification dataset."""

from collections.abc import Mapping, Sized
from typing import Any

from torch.utils.data import Dataset

from quaterion.dataset._label_checks import short_repr
from quaterion.dataset.similarity_samples import SimilarityGroupSample


class UnknownLengthError(NotImplementedError, TypeError):
    """``len()`` of a layer over an unsized dataset.

    A ``NotImplementedError`` as the spec asks, and also a ``TypeError`` so that
    ``list(...)`` and ``operator.length_hint`` treat the layer as having no length.
    """


def sized_len(dataset: Any) -> int:
    """``len(dataset)``, or :class:`UnknownLengthError` if it has no ``__len__``."""
    if isinstance(dataset, Sized):
        return len(dataset)
    raise UnknownLengthError(
        f"The wrapped dataset {type(dataset).__name__} has no __len__, so its length is unknown."
    )


class SimilarityGroupDataset(Dataset):
    """Map-style dataset turning ``dataset[i] == (record, label)`` into
    ``SimilarityGroupSample(obj=record, group=label)``.

    Args:
        dataset: map-style dataset of ``(record, label)`` pairs, e.g. a torchvision dataset.
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return sized_len(self.dataset)

    def __getitem__(self, index: int) -> SimilarityGroupSample:
        """``SimilarityGroupSample(obj=record, group=label)`` of ``dataset[index]``.

        Raises:
            TypeError: the item is not a ``(record, label)`` pair (a dict row of e.g. a
                Hugging Face dataset would otherwise unpack into its first two keys).
        """
        item = self.dataset[index]
        if isinstance(item, (Mapping, str, bytes)) or _pair_length(item) != 2:
            raise TypeError(
                f"SimilarityGroupDataset expects dataset[{index}] to be a (record, label) "
                f"pair, got a {type(item).__name__}: {short_repr(item)}. For dict rows (e.g. a Hugging "
                "Face dataset), write a Dataset whose __getitem__ returns "
                "SimilarityGroupSample(obj=row[...], group=row[...]) and pass it to the loader."
            )
        record, label = item
        return SimilarityGroupSample(obj=record, group=label)


def _pair_length(item: Any) -> int:
    """``len(item)``, or ``-1`` for an item without a length."""
    try:
        return len(item)
    except TypeError:
        return -1
