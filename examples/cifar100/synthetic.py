"""An offline stand-in for ``torchvision.datasets.CIFAR100``: 100 classes of 32x32 RGB images."""

from typing import Any, Callable, List, Optional, Tuple

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

NUM_CLASSES = 100


def render_cifar_image(label: int, train: bool, index: int, seed: int) -> np.ndarray:
    """``uint8 (32, 32, 3)``: a class-specific colour pair in a class-specific stripe pattern
    (orientation and frequency), plus per-image phase shift and pixel noise."""
    cls = np.random.default_rng([seed, label])
    img_rng = np.random.default_rng([seed, int(train), index])
    colour_a = cls.uniform(0, 255, size=3)
    colour_b = cls.uniform(0, 255, size=3)
    angle = cls.uniform(0, np.pi)
    frequency = cls.uniform(0.15, 0.6)
    phase = img_rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:32, 0:32]
    wave = 0.5 + 0.5 * np.sin(frequency * (xs * np.cos(angle) + ys * np.sin(angle)) + phase)
    image = wave[..., None] * colour_a + (1.0 - wave[..., None]) * colour_b
    image += img_rng.normal(0.0, 10.0, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


class SyntheticCIFAR100(Dataset):
    """Same interface as ``torchvision.datasets.CIFAR100``: item ``(PIL.Image, int label)``.

    ``num_samples`` items cycle through the 100 classes (item ``i`` has label ``i % 100``);
    labels are also available as ``targets``. Nothing is read or downloaded.
    """

    def __init__(
        self,
        root: Any = None,
        train: bool = True,
        transform: Optional[Callable] = None,
        target_transform: Optional[Callable] = None,
        download: bool = False,
        num_samples: int = 2000,
        seed: int = 0,
    ) -> None:
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        self.root = root
        self.train = train
        self.transform = transform
        self.target_transform = target_transform
        self.seed = seed
        self.targets: List[int] = [i % NUM_CLASSES for i in range(num_samples)]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> Tuple[Any, Any]:
        label = self.targets[index]
        image: Any = Image.fromarray(render_cifar_image(label, self.train, index, self.seed))
        target: Any = label
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target
