"""Row-by-row reference loops (plain Python floats) for the classifier-style group losses."""

import math


def cosines(emb, kernel):
    """Cosine of every row of ``emb`` with every column of ``kernel`` (norms clamped at 1e-12)."""
    rows, cols = emb.double().tolist(), kernel.double().T.tolist()
    out = []
    for e in rows:
        norm_e = max(math.sqrt(sum(v * v for v in e)), 1e-12)
        line = []
        for w in cols:
            norm_w = max(math.sqrt(sum(v * v for v in w)), 1e-12)
            line.append(sum(a * b for a, b in zip(e, w)) / (norm_e * norm_w))
        out.append(line)
    return out


def mean_cross_entropy(logit_rows, groups) -> float:
    """Mean over rows of ``logsumexp(logits) - logits[target]``."""
    losses = []
    for logits, y in zip(logit_rows, groups.tolist()):
        top = max(logits)
        losses.append(top + math.log(sum(math.exp(z - top) for z in logits)) - logits[y])
    return sum(losses) / len(losses)


def naive_softmax(emb, kernel, groups, temperature):
    rows, cols = emb.double().tolist(), kernel.double().T.tolist()
    logit_rows = [[sum(a * b for a, b in zip(e, w)) / temperature for w in cols] for e in rows]
    return mean_cross_entropy(logit_rows, groups)


def naive_cos_face(emb, kernel, groups, margin, scale):
    logit_rows = [
        [scale * (c - margin if j == y else c) for j, c in enumerate(cos_row)]
        for cos_row, y in zip(cosines(emb, kernel), groups.tolist())
    ]
    return mean_cross_entropy(logit_rows, groups)


def naive_arcface(emb, kernel, groups, scale, margin):
    logit_rows = [
        [scale * (math.cos(math.acos(c) + margin) if j == y else c) for j, c in enumerate(cos_row)]
        for cos_row, y in zip(cosines(emb, kernel), groups.tolist())
    ]
    return mean_cross_entropy(logit_rows, groups)


def naive_center(emb, centers, groups, lambda_c):
    total, count = 0.0, 0
    for e, y in zip(emb.double().tolist(), groups.tolist()):
        norm = max(math.sqrt(sum(v * v for v in e)), 1e-12)
        for k, v in enumerate(e):
            total += (v / norm - centers[y][k].item()) ** 2
            count += 1
    return lambda_c * total / count
