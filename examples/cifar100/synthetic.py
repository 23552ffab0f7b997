"""An offline stand-in for ``torchvision.datasets.CIFAR100``: 100 classes of 32x32 RGB images."""

from typing import Any, Callable, Optional

import numpy as np

from examples.rendered_images import RenderedImages

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


class SyntheticCIFAR100(RenderedImages):
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
        targets = [i % NUM_CLASSES for i in range(num_samples)]
        super().__init__(targets, root, transform, target_transform, seed)
        self.train = train

    def render(self, label: int, index: int) -> np.ndarray:
        return render_cifar_image(label, self.train, index, self.seed)
