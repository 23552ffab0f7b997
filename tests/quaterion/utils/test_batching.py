import pytest
from torch.utils.data import IterableDataset

from quaterion.utils.utils import iter_by_batch
from tests._datasets import ListDataset


class _IterDataset(IterableDataset):
    def __init__(self, items):
        self.items = items

    def __iter__(self):
        return iter(self.items)


CASES = [
    ([], []),
    ([1], [[1]]),
    ([1, 2], [[1, 2]]),
    ([1, 2, 3], [[1, 2], [3]]),
    ([1, 2, 3, 4], [[1, 2], [3, 4]]),
]
WRAPPERS = {
    "list": list,
    "iterator": iter,
    "map_dataset": ListDataset,
    "iterable_dataset": _IterDataset,
    "generator": lambda items: (x for x in items),
}


@pytest.mark.parametrize("items, expected", CASES)
@pytest.mark.parametrize("kind", list(WRAPPERS))
@pytest.mark.parametrize("log_progress", [True, False])
def test_batches(items, expected, kind, log_progress):
    assert list(iter_by_batch(WRAPPERS[kind](items), 2, log_progress=log_progress)) == expected


def test_batch_larger_than_sequence():
    assert list(iter_by_batch([1, 2, 3], 10, log_progress=False)) == [[1, 2, 3]]


def test_other_probe_errors_propagate():
    class Broken:
        def __getitem__(self, index):
            raise KeyError(index)

    with pytest.raises(KeyError):
        list(iter_by_batch(Broken(), 2, log_progress=False))
