"""Reference mining: one Python loop per query over the full similarity matrix."""

import math

import torch


def naive_mine(scores, positives, own=None, num_negatives=3, sampling="top", keys=None, **c):
    """``scores``: full ``(n, M)`` similarity matrix (list of lists); ``positives``: a set of
    corpus indices per query; ``own``: each query's own corpus index or None; ``c``: the
    controls (range_min, range_max, absolute_margin, relative_margin, max_score, min_score)."""
    range_min, range_max = c.get("range_min", 0), c.get("range_max")
    absolute_margin, relative_margin = c.get("absolute_margin"), c.get("relative_margin")
    max_score, min_score = c.get("max_score"), c.get("min_score")
    out_idx, out_scores = [], []
    for i, row in enumerate(scores):
        pos = [row[j] for j in positives[i] if own is None or j != own[i]]
        p = min(pos) if pos else math.inf
        survivors = []
        for j, s in enumerate(row):
            if j in positives[i] or (own is not None and j == own[i]):
                continue
            if absolute_margin is not None and s + absolute_margin > p:
                continue
            if relative_margin is not None and p != math.inf and s > p - abs(p) * relative_margin:
                continue
            if max_score is not None and s > max_score:
                continue
            if min_score is not None and s < min_score:
                continue
            survivors.append((s, j))
        survivors.sort(key=lambda t: -t[0])
        if sampling == "top":
            end = range_min + num_negatives
            window = survivors[range_min:end]
        else:
            end = (
                range_max
                if range_max is not None
                else range_min
                + num_negatives
                * (
                    10
                    if any(
                        v is not None
                        for v in (absolute_margin, relative_margin, max_score, min_score)
                    )
                    else 1
                )
            )
            window = survivors[range_min:end]
            slots = sorted(range(len(window)), key=lambda k: float(keys[i][k]))[:num_negatives]
            window = sorted((window[k] for k in slots), key=lambda t: -t[0])
        window = window[:num_negatives]
        idx = [j for _, j in window] + [-1] * (num_negatives - len(window))
        sc = [s for s, _ in window] + [-math.inf] * (num_negatives - len(window))
        out_idx.append(idx)
        out_scores.append(sc)
    return torch.tensor(out_idx, dtype=torch.int64), torch.tensor(out_scores)


def cosine_matrix(x, y):
    """Plain cos matrix from row norms (an independent computation)."""
    return (x @ y.T) / (x.norm(dim=1)[:, None] * y.norm(dim=1)[None, :])


def assert_same_negatives(
    got, expected_idx, expected_scores, reference, rtol: float = 1e-5, atol: float = 1e-6
) -> None:
    """``got`` (a ``MinedNegatives``) picked ``expected_idx`` with ``expected_scores``, where two
    computations of one ranking (blocked vs whole matrix, index vs torch) may swap items whose
    scores tie up to float rounding: every slot's score must match, the same slots must be
    empty (-1), and a slot may hold another index only if its score ties with the expected one.
    ``reference``: the full ``(queries, corpus)`` score matrix of an independent computation;
    the score of every picked index is read from it, not from the miner's own report."""
    import torch

    reference = torch.as_tensor(reference, dtype=expected_scores.dtype)

    assert got.indices.shape == expected_idx.shape
    assert torch.equal(got.indices < 0, expected_idx < 0), "different slots left empty"
    valid = expected_idx >= 0
    torch.testing.assert_close(got.scores[valid], expected_scores[valid], rtol=rtol, atol=atol)
    for row in range(got.indices.shape[0]):
        picked = [int(i) for i in got.indices[row] if i >= 0]
        assert len(set(picked)) == len(picked), f"row {row} repeats a negative: {picked}"
    true_scores = reference.gather(1, got.indices.clamp(min=0))
    torch.testing.assert_close(true_scores[valid], expected_scores[valid], rtol=rtol, atol=atol)
