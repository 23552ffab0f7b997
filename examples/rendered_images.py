"""Base of the examples' offline image datasets (cars, cifar100): images drawn on access."""

from typing import Any, Callable, List, Optional, Tuple

import numpy as np
from PIL import Image
from torch.utils.data import Dataset


class RenderedImages(Dataset):
    """Item ``i``: ``(PIL.Image RGB, int label)`` drawn by :meth:`render`, like a torchvision
    image dataset: ``transform`` / ``target_transform`` apply to the image / label, and
    ``targets`` lists every label without drawing an image. Nothing is read or downloaded.

    Args:
        targets: the label of every item.
        root, transform, target_transform: as in torchvision (``root`` is only kept).
        seed: seed of the drawing; the same seed draws the same images.
    """

    def __init__(
        self,
        targets: List[int],
        root: Any = None,
        transform: Optional[Callable] = None,
        target_transform: Optional[Callable] = None,
        seed: int = 0,
    ) -> None:
        self.targets = targets
        self.root = root
        self.transform = transform
        self.target_transform = target_transform
        self.seed = seed

    def render(self, label: int, index: int) -> np.ndarray:
        """``uint8 (H, W, 3)`` pixels of item ``index``, whose class is ``label``."""
        raise NotImplementedError(f"{type(self).__name__} must implement render(label, index)")

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> Tuple[Any, Any]:
        label = self.targets[index]
        image: Any = Image.fromarray(self.render(label, index))
        target: Any = label
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target
