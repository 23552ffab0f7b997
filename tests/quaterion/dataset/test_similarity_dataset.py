import pytest
from torch.utils.data import IterableDataset

from quaterion.dataset import SimilarityGroupDataset, SimilarityGroupSample


class _Unsized(IterableDataset):
    def __iter__(self):
        yield ("x", 0)

    def __getitem__(self, index):
        return ("x", 0)


def test_wraps_record_label_pairs():
    data = [("cat.jpg", 0), ("dog.jpg", 1), ("cat2.jpg", 0)]
    dataset = SimilarityGroupDataset(data)
    assert len(dataset) == len(data)
    assert [dataset[i] for i in range(len(data))] == [
        SimilarityGroupSample(obj=x, group=y) for x, y in data
    ]


def test_unsized_len_raises():
    with pytest.raises(NotImplementedError):
        len(SimilarityGroupDataset(_Unsized()))
    assert SimilarityGroupDataset(_Unsized())[0] == SimilarityGroupSample("x", 0)
