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
