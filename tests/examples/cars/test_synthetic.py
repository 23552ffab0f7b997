"""Tests of the synthetic Stanford Cars stand-in."""

import numpy as np
import pytest
from PIL import Image

from examples.cars.synthetic import SyntheticStanfordCars


def test_interface_matches_stanford_cars():
    train = SyntheticStanfordCars("ignored", split="train", download=False)
    test = SyntheticStanfordCars("ignored", split="test")
    image, label = train[5]
    assert isinstance(image, Image.Image) and image.mode == "RGB"
    assert type(label) is int and 0 <= label < 196
    counts = np.bincount(train.targets + test.targets, minlength=196)
    assert counts.min() >= 2 and len(counts) == 196
    assert [train[i][1] for i in range(len(train))] == train.targets
    with pytest.raises(ValueError, match="split"):
        SyntheticStanfordCars(split="val")


def test_transform_and_determinism():
    dataset = SyntheticStanfordCars(transform=lambda im: np.asarray(im), target_transform=str)
    first, label = dataset[7]
    again, _ = SyntheticStanfordCars(transform=lambda im: np.asarray(im))[7]
    assert label == str(dataset.targets[7])
    np.testing.assert_array_equal(first, again)


def test_classes_are_distinguishable():
    """Nearest class centroid (train images) classifies the test images of 20 classes."""
    size = 24
    train = SyntheticStanfordCars(split="train", image_size=size)
    test = SyntheticStanfordCars(split="test", image_size=size)
    classes = range(20)

    def pixels(dataset, label):
        return [
            np.asarray(dataset[i][0], dtype=np.float64).ravel()
            for i, t in enumerate(dataset.targets)
            if t == label
        ]

    centroids = np.stack([np.mean(pixels(train, c), axis=0) for c in classes])
    correct = total = 0
    for c in classes:
        for x in pixels(test, c):
            correct += int(np.argmin(((centroids - x) ** 2).sum(axis=1)) == c)
            total += 1
    assert correct / total >= 0.9
    # Images of one class still differ (noise and jitter).
    a, b = pixels(train, 0)
    assert not np.array_equal(a, b)


def test_the_hard_set_is_reproducible_and_its_images_are_crops_and_flips():
    """``hard``: palette colours, and each image a crop/flip variant of its class picture."""
    from examples.cars.synthetic import _PALETTE

    size = 32
    dataset = SyntheticStanfordCars(split="train", image_size=size, hard=True)
    again = SyntheticStanfordCars(split="train", image_size=size, hard=True)
    images = [np.asarray(dataset[i][0], dtype=np.float64) for i in range(40)]
    np.testing.assert_array_equal(images[5], np.asarray(again[5][0], dtype=np.float64))
    corners = np.stack([image[:3, :3].reshape(-1, 3).mean(axis=0) for image in images])
    # the background (a corner, noise averaged out) is one of the palette's colours
    nearest = np.abs(corners[:, None] - _PALETTE[None]).max(axis=2).min(axis=1)
    assert (nearest < 25).all()
    # the column profile of the body differs in place between the images of one class
    profiles = [np.abs(image - image[0, 0]).sum(axis=(0, 2)) for image in images[:2]]
    assert np.argmax(profiles[0] > profiles[0].max() / 2) != np.argmax(
        profiles[1] > profiles[1].max() / 2
    ) or not np.allclose(profiles[0], profiles[1], atol=size * 40)
    easy = np.asarray(SyntheticStanfordCars(split="train", image_size=size)[0][0])
    assert not np.array_equal(easy, images[0].astype(np.uint8))


def test_the_hard_set_keys_its_own_split_and_cache_files():
    from examples.cars.cli import default_cache_dir
    from examples.cars.data import data_source

    assert [data_source(s) for s in (None, "easy", "hard")] == [
        "real",
        "synthetic",
        "synthetic-hard",
    ]
    assert "synthetic-hard_64_" in default_cache_dir("hard", 64, "resnet18", "random", 1)
    assert "/synthetic_64_" in default_cache_dir("easy", 64, "resnet18", "random", 1)
