"""SimilarityGroupDataset: adapts a ``(record, label)`` classification dataset."""

from collections.abc import Sized
from typing import Any

from torch.utils.data import Dataset

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
        record, label = self.dataset[index]
        return SimilarityGroupSample(obj=record, group=label)
