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


@pytest.mark.parametrize("kind", list(WRAPPERS))
@pytest.mark.parametrize("batch_size", [0, -1])
def test_a_batch_size_below_one_is_refused(kind, batch_size):
    # a list with -1 yielded nothing (a negative range step); an iterator yielded single items
    with pytest.raises(ValueError, match=rf"batch_size must be a positive int, got {batch_size}"):
        list(iter_by_batch(WRAPPERS[kind]([1, 2, 3]), batch_size, log_progress=False))


@pytest.mark.parametrize("batch_size", [2.5, "2", None, True])
def test_a_batch_size_that_is_not_an_int_is_refused(batch_size):
    with pytest.raises(TypeError, match="batch_size must be a positive int"):
        list(iter_by_batch(iter([1, 2, 3]), batch_size, log_progress=False))


def test_a_numpy_batch_size_is_taken():
    import numpy as np

    assert list(iter_by_batch([1, 2, 3], np.int64(2), log_progress=False)) == [[1, 2], [3]]
