"""Vector norms."""

import torch.nn.functional as F
from torch import Tensor


def l2_norm(inputs: Tensor, dim: int = 0) -> Tensor:
    """L2-normalise ``inputs`` along ``dim`` (note the default ``dim=0``)."""
    return F.normalize(inputs, p=2, dim=dim)
