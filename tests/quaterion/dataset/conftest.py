"""Tiny datasets for the quaterion.dataset tests."""

from typing import Any, List

import mmh3
import pytest
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from quaterion.dataset import SimilarityGroupSample, SimilarityPairSample


def reference_id(obj: Any, salt: Any) -> int:
    """Item id computed straight from the spec's formula (independent of hashit)."""
    return mmh3.hash64(bytes(str(obj) + str(salt), "utf-8"), signed=False)[0]


class CountingDataset(Dataset):
    """Map-style dataset recording how often it is read."""

    def __init__(self, items: List[Any]):
        self.items = list(items)
        self.reads = 0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Any:
        self.reads += 1
        return self.items[index]


class ShardedGroups(IterableDataset):
    """Iterable of group samples; worker ``w`` of ``k`` yields items ``w, w + k, ...``."""

    def __init__(self, size: int):
        self.size = size

    def __iter__(self):
        info = get_worker_info()
        start, step = (0, 1) if info is None else (info.id, info.num_workers)
        for i in range(start, self.size, step):
            yield SimilarityGroupSample(obj=f"obj{i}", group=i % 3)


class SizedShardedGroups(ShardedGroups):
    def __len__(self) -> int:
        return self.size


@pytest.fixture
def pair_samples() -> List[SimilarityPairSample]:
    return [
        SimilarityPairSample(obj_a=f"a{i}", obj_b=f"b{i}", score=float(i % 2), subgroup=i % 3)
        for i in range(7)
    ]


@pytest.fixture
def group_samples() -> List[SimilarityGroupSample]:
    return [SimilarityGroupSample(obj=f"x{i}", group=i % 3) for i in range(7)]
