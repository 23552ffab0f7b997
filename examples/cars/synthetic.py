"""An offline stand-in for ``torchvision.datasets.StanfordCars`` with learnable class structure."""

from typing import Any, Callable, Optional

import numpy as np

from .config import SYNTHETIC_IMAGES_PER_CLASS
from examples.rendered_images import RenderedImages

_SPLITS = ("train", "test")


def render_car_image(
    label: int, split: str, index: int, image_size: int, seed: int, hard: bool = False
) -> np.ndarray:
    """Draw one ``uint8 (H, W, 3)`` image of class ``label``.

    A class owns a background colour, a body colour and a body rectangle; each image adds a
    few pixels of jitter to the rectangle and Gaussian pixel noise, so images of a class are
    similar but not identical, and different classes are distinguishable.

    ``hard``: colours come from a small palette (many classes share them; the rectangle and
    a marker inside it tell them apart) and every image is an augmented-like variant of its
    class's picture: a random crop of 50-100% of it, resized back, flipped half of the time.
    """
    cls = np.random.default_rng([seed, label])
    img_rng = np.random.default_rng([seed, _SPLITS.index(split), index])
    if hard:
        background, body = _PALETTE[cls.choice(len(_PALETTE), size=2, replace=False)]
    else:
        background = cls.uniform(20, 235, size=3)
        body = cls.uniform(20, 235, size=3)
    h0, w0 = cls.uniform(0.15, 0.45, size=2)
    h1, w1 = cls.uniform(0.55, 0.9, size=2)
    jitter = img_rng.uniform(-0.04, 0.04, size=4)
    top, left, bottom, right = (
        np.clip(np.array([h0, w0, h1, w1]) + jitter, 0.0, 1.0) * image_size
    ).astype(int)
    image = np.empty((image_size, image_size, 3), dtype=np.float64)
    image[:] = background
    image[top:bottom, left:right] = body
    if hard:
        mark_top, mark_left = cls.uniform(0.0, 0.6, size=2)
        rows = top + int(mark_top * (bottom - top)), left + int(mark_left * (right - left))
        side = max(2, image_size // 8)
        image[rows[0] : rows[0] + side, rows[1] : rows[1] + side] = 255 - body
        image = _crop_and_flip(image, img_rng)
    image += img_rng.normal(0.0, 12.0, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


_PALETTE = np.array(
    [[200, 40, 40], [40, 160, 60], [50, 70, 200], [220, 200, 60], [120, 120, 120], [30, 30, 30]],
    dtype=np.float64,
)


def _crop_and_flip(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random square crop of 50-100% of ``image``'s area, resized back (nearest
    neighbour), flipped left-right with probability 1/2."""
    size = image.shape[0]
    side = max(1, int(round(size * np.sqrt(rng.uniform(0.5, 1.0)))))
    top, left = rng.integers(0, size - side + 1, size=2)
    grid = top + (np.arange(size) * side) // size, left + (np.arange(size) * side) // size
    image = image[grid[0]][:, grid[1]]
    return image[:, ::-1] if rng.random() < 0.5 else image


class SyntheticStanfordCars(RenderedImages):
    """Same interface as ``torchvision.datasets.StanfordCars``: item ``(PIL.Image RGB, int label)``.

    Each split holds ``images_per_class`` images of each of the 196 classes (ordered by
    class), so every class has ``2 * images_per_class`` images across train+test. Labels are
    available without decoding images via ``targets``. Nothing is read or downloaded.
    ``hard`` draws the harder set of :func:`render_car_image` (``--synthetic hard``).
    """

    NUM_CLASSES = 196

    def __init__(
        self,
        root: Any = None,
        split: str = "train",
        transform: Optional[Callable] = None,
        target_transform: Optional[Callable] = None,
        download: bool = False,
        images_per_class: int = SYNTHETIC_IMAGES_PER_CLASS,
        image_size: int = 48,
        seed: int = 0,
        hard: bool = False,
    ) -> None:
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
        if images_per_class < 1:
            raise ValueError(f"images_per_class must be >= 1, got {images_per_class}")
        targets = [i // images_per_class for i in range(self.NUM_CLASSES * images_per_class)]
        super().__init__(targets, root, transform, target_transform, seed)
        self.split = split
        self.image_size = image_size
        self.hard = hard

    def render(self, label: int, index: int) -> np.ndarray:
        return render_car_image(label, self.split, index, self.image_size, self.seed, self.hard)
