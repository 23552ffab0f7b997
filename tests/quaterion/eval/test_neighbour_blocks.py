"""Neighbour lists laid out as blocks give the metrics of a naive loop over the lists."""

import math

import pytest
import torch

from quaterion.eval.group.retrieval_r_precision import RPrecisionReducer
from quaterion.eval.neighbour_blocks import neighbour_block
from quaterion.eval.pair.retrieval_precision import PrecisionReducer
from quaterion.eval.pair.retrieval_reciprocal_rank import ReciprocalRankReducer


def random_case(seed: int, b: int = 7, depth: int = 5, num_items: int = 30):
    """Neighbour lists (some padded with -1) and sparse relevance with fractional labels."""
    generator = torch.Generator().manual_seed(seed)
    neighbours = torch.stack(
        [torch.randperm(num_items, generator=generator)[:depth] for _ in range(b)]
    )
    short = torch.rand(b, generator=generator) < 0.3
    neighbours[short, depth - 2 :] = -1  # the index returned fewer hits
    entries = []
    for row in range(b):
        count = int(torch.randint(0, 9, (1,), generator=generator))
        for col in torch.randperm(num_items, generator=generator)[:count].sort().values.tolist():
            entries.append(
                (row, col, [1.0, 0.5][int(torch.randint(0, 2, (1,), generator=generator))])
            )
    rows = torch.tensor([e[0] for e in entries], dtype=torch.int64)
    cols = torch.tensor([e[1] for e in entries], dtype=torch.int64)
    vals = torch.tensor([e[2] for e in entries])
    return neighbours, rows, cols, vals, num_items


def naive(neighbours, rows, cols, vals, k_precision):
    """Per-row loops over the lists: R-precision sums, precision@k and reciprocal ranks."""
    hits = positions = 0.0
    precision, reciprocal = [], []
    for row, ranked in enumerate(neighbours.tolist()):
        labels = {c: v for r, c, v in zip(rows.tolist(), cols.tolist(), vals.tolist()) if r == row}
        k = math.ceil(sum(labels.values()))
        hits += sum(labels.get(item, 0.0) for item in ranked[:k])  # beyond the list: misses
        positions += k
        precision.append(sum(labels.get(item, 0.0) for item in ranked[:k_precision]) / k_precision)
        found = sorted(ranked.index(item) for item in labels if item in ranked)
        reciprocal += [1.0 / (p + 1) for p in found] + [0.0] * (len(labels) - len(found))
    return hits / positions, torch.tensor(precision), torch.tensor(reciprocal)


@pytest.mark.parametrize("seed", range(6))
def test_reducers_over_neighbour_blocks_equal_naive_loops(seed):
    neighbours, rows, cols, vals, num_items = random_case(seed)
    depth = neighbours.shape[1]
    relevant = torch.zeros(neighbours.shape[0], dtype=torch.float64).index_add_(
        0, rows, vals.double()
    )
    fill = max(0, int(torch.ceil(relevant).max()) - depth)
    part = neighbour_block(neighbours, rows, cols, vals, num_items, fill)
    r_precision, precision, reciprocal = (
        RPrecisionReducer(),
        PrecisionReducer(3),
        ReciprocalRankReducer(),
    )
    for reducer in (r_precision, precision, reciprocal):
        reducer.update(part.block)
    want_r, want_p, want_rr = naive(neighbours, rows, cols, vals, 3)
    torch.testing.assert_close(
        r_precision.compute().double(), torch.tensor(want_r, dtype=torch.float64), rtol=0, atol=1e-6
    )
    torch.testing.assert_close(precision.compute(), want_p.float(), rtol=0, atol=1e-6)
    got_rr = reciprocal.compute().masked_fill(part.hidden, 0.0)
    torch.testing.assert_close(got_rr, want_rr.float(), rtol=0, atol=1e-6)
    assert int(part.hidden.sum()) == int((want_rr == 0).sum())
