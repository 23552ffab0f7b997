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


def test_dict_rows_of_a_hugging_face_dataset_are_refused_with_the_fix():
    # a dict row would unpack into its two keys: obj="x", group="g"
    import datasets

    rows = datasets.Dataset.from_dict({"x": [[0.0, 1.0], [2.0, 3.0]], "g": [0, 1]})
    with pytest.raises(
        TypeError, match=r"\(record, label\) pair, got a dict.*SimilarityGroupSample"
    ):
        SimilarityGroupDataset(rows)[0]


@pytest.mark.parametrize("item", [(1, 2, 3), "ab", 5])
def test_items_that_are_not_pairs_are_named(item):
    with pytest.raises(TypeError, match=r"dataset\[0\] to be a \(record, label\) pair"):
        SimilarityGroupDataset([item])[0]


def test_hugging_face_rows_as_pairs_keep_record_and_label():
    import datasets

    rows = datasets.Dataset.from_dict({"x": [[0.0, 1.0], [2.0, 3.0]], "g": [4, 7]})
    pairs = [(row["x"], row["g"]) for row in rows]
    assert SimilarityGroupDataset(pairs)[1] == SimilarityGroupSample(obj=[2.0, 3.0], group=7)
