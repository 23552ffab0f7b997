"""Independent float64 reference implementations (plain loops over rows, stable order)."""

import math


def stable_order(row):
    """Column indices by ascending distance, ties by column index (a stable sort)."""
    return sorted(range(len(row)), key=lambda j: (row[j], j))


def precision(dist, labels, k):
    dist, labels = dist.tolist(), labels.tolist()
    return [sum(labels[i][j] for j in stable_order(dist[i])[:k]) / k for i in range(len(dist))]


def reciprocal_rank(dist, labels):
    dist, labels = dist.tolist(), labels.tolist()
    out = []
    for i, row in enumerate(dist):
        for rank, j in enumerate(stable_order(row)):
            if labels[i][j] != 0:
                out.append(1.0 / (rank + 1))
    return out


def r_precision(dist, labels):
    dist, labels = dist.tolist(), labels.tolist()
    hits, positions = 0.0, 0
    for i, row in enumerate(dist):
        count = min(max(math.ceil(sum(labels[i])), 0), len(row))
        hits += sum(labels[i][j] for j in stable_order(row)[:count])
        positions += count
    return hits / positions if positions else float("nan")


def square_problem(embeddings, distance, labels_fn):
    """Square distance matrix with diagonal ``max + 1`` (loop over entries) and labels."""
    n = embeddings.shape[0]
    e = embeddings.double()
    d = distance.distance_matrix(e, e).double()
    top = float(d.max()) + 1
    for i in range(n):
        d[i, i] = top
    return d, labels_fn(n)


def group_labels(groups):
    import torch

    g = groups.tolist()
    n = len(g)
    return torch.tensor([[float(i != j and g[i] == g[j]) for j in range(n)] for i in range(n)])


def pair_labels(scores, pairs, n):
    import torch

    out = [[0.0] * n for _ in range(n)]
    for (a, b), s in zip(pairs.tolist(), scores.tolist()):
        out[a][b] = s
    for (a, b), s in zip(pairs.tolist(), scores.tolist()):
        out[b][a] = s
    return torch.tensor(out)
