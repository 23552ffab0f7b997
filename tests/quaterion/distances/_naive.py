"""Pure-Python reference distances (float64, one pair at a time)."""

import math

import torch


def pairwise(fn, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``M_ij = fn(x_i, y_j)`` with python lists."""
    rows = [[fn(a.tolist(), b.tolist()) for b in y] for a in x]
    return torch.tensor(rows, dtype=torch.float64)


def rowwise(fn, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``v_i = fn(x_i, y_i)``."""
    return torch.tensor([fn(a.tolist(), b.tolist()) for a, b in zip(x, y)], dtype=torch.float64)


def dot(a, b):
    return sum(u * v for u, v in zip(a, b))


def cos(a, b):
    return dot(a, b) / (math.sqrt(dot(a, a)) * math.sqrt(dot(b, b)))


def l2(a, b):
    return math.sqrt(sum((u - v) ** 2 for u, v in zip(a, b)))


def l1(a, b):
    return sum(abs(u - v) for u, v in zip(a, b))
