"""SimilarityGroupDataset: adapts a ``(record, label)`` classification dataset."""

from torch.utils.data import Dataset

from quaterion.dataset._length import sized_len
from quaterion.dataset.similarity_samples import SimilarityGroupSample


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
