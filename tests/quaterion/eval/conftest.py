"""Fixtures for the evaluation tests: random data with ties, a tiny identity model."""

import random

import pytest
import torch

from quaterion.dataset.similarity_samples import SimilarityGroupSample, SimilarityPairSample
from quaterion.eval import _ranking, blocks
from quaterion_models.heads import EmptyHead
from quaterion_models.model import SimilarityModel
from tests.quaterion_models.toy_encoders import StackEncoder


class IdentityEncoder(StackEncoder):
    """Returns its inputs (lists of vectors) stacked as float32."""

    def get_collate_fn(self):
        return lambda batch: torch.stack([torch.as_tensor(x, dtype=torch.float32) for x in batch])


def identity_model(dim: int) -> SimilarityModel:
    return SimilarityModel(encoders=IdentityEncoder(dim), head=EmptyHead(dim))


@pytest.fixture
def model3():
    return identity_model(3)


@pytest.fixture
def pair_dataset():
    """Eight 3-d vectors [1,1,1]..[12,12,12] in four pairs, partners 1 apart."""
    starts = [1, 4, 7, 11]
    return [
        SimilarityPairSample(obj_a=[float(s)] * 3, obj_b=[float(s + 1)] * 3, score=1.0, subgroup=0)
        for s in starts
    ]


@pytest.fixture
def group_dataset():
    """Six 3-d vectors in three well separated groups of two."""
    points = [(1, 0), (1.1, 0), (20, 1), (20.5, 1), (50, 2), (51, 2)]
    return [SimilarityGroupSample(obj=[v, 0.0, 1.0], group=g) for v, g in points]


@pytest.fixture
def set_block_rows(monkeypatch):
    """``set_block_rows(rows, num_cols)``: make the default block hold ``rows`` query rows."""

    def apply(rows: int, num_cols: int) -> None:
        monkeypatch.setattr(blocks, "BLOCK_BYTES", 4 * num_cols * rows)

    return apply


@pytest.fixture
def set_chunk_rows(monkeypatch):
    """``set_chunk_rows(rows, num_cols)``: exact-tie and sort paths take ``rows`` rows at once."""

    def apply(rows: int, num_cols: int) -> None:
        monkeypatch.setattr(_ranking, "_CHUNK_CELLS", num_cols * rows)

    return apply


@pytest.fixture
def seeded():
    state = random.getstate()
    random.seed(0)
    torch.manual_seed(0)
    yield
    random.setstate(state)


def tied_embeddings(n: int, dim: int = 2, high: int = 3) -> torch.Tensor:
    """Small integer vectors: many equal distances and duplicate rows."""
    return torch.randint(0, high, (n, dim)).float()
