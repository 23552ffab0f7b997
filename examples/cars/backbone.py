"""Build a torchvision ResNet with its classifier removed (pooled features as the embedding)."""

from typing import Optional, Tuple

import torchvision
from torch import nn


def build_backbone(
    arch: str = "resnet152", weights: Optional["torchvision.models.WeightsEnum"] = None
) -> Tuple[nn.Module, int]:
    """``torchvision.models.<arch>(weights=weights)`` with ``fc = Identity()``.

    The builder is looked up on ``torchvision.models`` at call time, so tests and users can
    substitute a stand-in (e.g. ``monkeypatch.setattr(torchvision.models, "resnet152", ...)``).

    Returns:
        ``(module, embedding_size)``: the module maps float ``(B, 3, H, W)`` images to
        ``(B, embedding_size)`` (2048 for ResNet50/101/152, 512 for ResNet18/34).
    """
    builder = getattr(torchvision.models, arch, None)
    if builder is None:
        raise ValueError(f"arch must name a torchvision ResNet builder, got {arch!r}")
    model = builder(weights=weights)
    fc = getattr(model, "fc", None)
    if not isinstance(fc, nn.Linear):
        raise ValueError(
            f"arch {arch!r} has no `fc` Linear classifier to strip; use a ResNet (e.g. resnet152)"
        )
    embedding_size = fc.in_features
    model.fc = nn.Identity()
    return model, embedding_size
