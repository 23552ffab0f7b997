import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from quaterion.utils import (
    get_anchor_negative_mask,
    get_anchor_positive_mask,
    get_masked_maximum,
    get_masked_minimum,
    get_triplet_mask,
)

labels_st = st.lists(st.integers(0, 3), min_size=1, max_size=7)


@settings(max_examples=30, deadline=None)
@given(labels_st)
def test_triplet_mask_matches_triple_loop(labels):
    n = len(labels)
    expected = torch.zeros(n, n, n, dtype=torch.bool)
    for i, j, k in itertools.product(range(n), repeat=3):
        expected[i, j, k] = (
            i != j and i != k and j != k and labels[i] == labels[j] and labels[i] != labels[k]
        )
    mask = get_triplet_mask(torch.tensor(labels))
    assert mask.dtype == torch.bool
    assert torch.equal(mask, expected)


@settings(max_examples=30, deadline=None)
@given(labels_st, labels_st)
def test_pair_masks_match_double_loop(labels_a, labels_b):
    a, b = torch.tensor(labels_a), torch.tensor(labels_b)
    same_batch = labels_a == labels_b
    pos = get_anchor_positive_mask(a, b)
    neg = get_anchor_negative_mask(a, b)
    for i, j in itertools.product(range(len(labels_a)), range(len(labels_b))):
        diagonal = same_batch and i == j
        assert bool(pos[i, j]) == (labels_a[i] == labels_b[j] and not diagonal)
        assert bool(neg[i, j]) == (labels_a[i] != labels_b[j])


def test_positive_mask_defaults_to_same_labels_without_diagonal():
    labels = torch.tensor([1, 1, 2])
    expected = torch.tensor([[False, True, False], [True, False, False], [False, False, False]])
    assert torch.equal(get_anchor_positive_mask(labels), expected)
    # equal values in a different tensor object also drop the diagonal
    assert torch.equal(get_anchor_positive_mask(labels, labels.clone()), expected)
    # different values keep it
    other = torch.tensor([1, 1, 3])
    assert bool(get_anchor_positive_mask(labels, other)[0, 0])
    assert torch.equal(get_anchor_negative_mask(labels), ~(labels[:, None] == labels[None, :]))


def test_masked_max_min_against_loop():
    gen = torch.Generator().manual_seed(1)
    dists = torch.rand(5, 6, generator=gen, dtype=torch.float64)
    mask = torch.rand(5, 6, generator=gen) > 0.5
    mask[2] = False  # empty row
    got_max = get_masked_maximum(dists, mask)
    got_min = get_masked_minimum(dists, mask)
    assert got_max.shape == (5, 1) and got_min.shape == (5, 1)
    for i in range(5):
        chosen = [float(dists[i, j]) for j in range(6) if mask[i, j]]
        exp_max = max(chosen) if chosen else float(dists[i].min())
        exp_min = min(chosen) if chosen else float(dists[i].max())
        assert got_max[i, 0].item() == pytest.approx(exp_max)
        assert got_min[i, 0].item() == pytest.approx(exp_min)


def test_masked_reductions_along_dim0():
    dists = torch.tensor([[1.0, 5.0], [3.0, 2.0]])
    mask = torch.tensor([[True, False], [True, True]])
    assert_close(get_masked_maximum(dists, mask, dim=0), torch.tensor([[3.0, 2.0]]))
    assert_close(get_masked_minimum(dists, mask, dim=0), torch.tensor([[1.0, 2.0]]))
