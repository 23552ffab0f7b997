"""Tests of the cifar100 data (synthetic and the real-data error path) and the encoder."""

import numpy as np
import pytest
import torch
from PIL import Image

from examples.cifar100 import (
    cifar100,
    train_simple,
    train_with_pytorch_metric_learning,
    train_with_xbm,
)
from examples.cifar100.cifar100 import DataNotFoundError, MobilenetV3Encoder, get_dataloaders
from examples.cifar100.synthetic import SyntheticCIFAR100


def test_synthetic_dataset_interface():
    dataset = SyntheticCIFAR100(num_samples=250)
    image, label = dataset[103]
    assert isinstance(image, Image.Image) and image.size == (32, 32) and image.mode == "RGB"
    assert label == 3 and type(label) is int
    assert sorted(set(dataset.targets)) == list(range(100))
    np.testing.assert_array_equal(np.asarray(dataset[7][0]), np.asarray(SyntheticCIFAR100()[7][0]))


def test_synthetic_classes_are_distinguishable():
    """Nearest class centroid of per-channel means and spectra separates 20 classes."""
    train = SyntheticCIFAR100(train=True, num_samples=600)
    test = SyntheticCIFAR100(train=False, num_samples=600)

    def feature(image):
        x = np.asarray(image, dtype=np.float64)
        spectrum = np.abs(np.fft.fft2(x.mean(axis=2)))[:8, :8].ravel()
        return np.concatenate([x.mean(axis=(0, 1)), x.std(axis=(0, 1)), spectrum / 100])

    classes = range(20)
    centroids = np.stack(
        [np.mean([feature(train[i][0]) for i in range(c, 600, 100)], axis=0) for c in classes]
    )
    hits = [
        int(np.argmin(((centroids - feature(test[i][0])) ** 2).sum(axis=1)) == c)
        for c in classes
        for i in range(c, 600, 100)
    ]
    assert np.mean(hits) >= 0.8


def test_synthetic_loaders():
    train_loader, val_loader = get_dataloaders(32, synthetic=True, synthetic_size=120)
    assert len(train_loader.dataset) == 120 and len(val_loader.dataset) == 200
    _ids, features, labels = next(iter(train_loader))
    assert len(features) == 32 and features[0].shape == (3, 32, 32)
    assert labels["groups"].dtype == torch.long
    assert val_loader.batch_size == 256


def test_missing_data_names_the_options(tmp_path, no_network):
    with pytest.raises(DataNotFoundError) as error:
        get_dataloaders(data_dir=str(tmp_path))
    message = str(error.value)
    assert "--data-dir" in message and "--synthetic" in message and "--download" in message
    assert no_network == []


def test_download_only_when_asked(tmp_path, monkeypatch):
    calls = []

    class FakeCIFAR100(SyntheticCIFAR100):
        def __init__(self, root, train=True, transform=None, download=False):
            calls.append(download)
            if not download:
                raise RuntimeError("Dataset not found or corrupted.")
            super().__init__(root, train=train, transform=transform, num_samples=10)

    monkeypatch.setattr(cifar100.torchvision.datasets, "CIFAR100", FakeCIFAR100)
    train, val = cifar100.get_datasets(data_dir=str(tmp_path), download=True)
    assert calls == [False, True, False, True] and len(train) == 10
    calls.clear()
    with pytest.raises(DataNotFoundError):
        cifar100.get_datasets(data_dir=str(tmp_path), download=False)
    assert calls == [False]


def test_mobilenet_encoder(capsys):
    encoder = MobilenetV3Encoder(16, weights="random")
    assert "randomly initialised" in capsys.readouterr().err
    assert encoder.trainable is True and encoder.embedding_size == 16
    assert encoder.encoder.classifier[0].in_features == 576
    out = encoder(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 16) and out.requires_grad


@pytest.mark.parametrize(
    "script", [train_simple, train_with_pytorch_metric_learning, train_with_xbm]
)
def test_scripts_exit_with_a_hint_on_missing_data(script, workdir, no_network):
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--data-dir", str(workdir / "absent")])
    message = str(exit_info.value.code)
    assert "--data-dir" in message and "--synthetic" in message
    assert no_network == []


def test_a_lone_last_training_image_is_dropped_and_one_image_is_refused(capsys):
    # MobileNetV3's batch norm fails on a batch of one in train mode (129 = 128 + 1)
    train_loader, _ = get_dataloaders(32, synthetic=True, synthetic_size=65)
    sizes = [len(features) for _ids, features, _labels in train_loader]
    assert sizes == [32, 32] and len(train_loader) == 2
    train_loader, _ = get_dataloaders(32, synthetic=True, synthetic_size=66)
    assert [len(f) for _i, f, _l in train_loader] == [32, 32, 2]  # nothing else dropped
    # under DDP each of 2 processes gets ceil(130 / 2) = 65 = 2 * 32 + 1 images
    assert get_dataloaders(32, synthetic=True, synthetic_size=130, processes=2)[0].drop_last
    assert not get_dataloaders(32, synthetic=True, synthetic_size=130)[0].drop_last
    with pytest.raises(ValueError, match="at least 2 images, got 1"):
        get_dataloaders(32, synthetic=True, synthetic_size=1)
    from examples.cifar100 import train_simple

    with pytest.raises(SystemExit):
        train_simple.main(["--synthetic", "--synthetic-size", "1"])
    assert "--synthetic-size must be at least 2" in capsys.readouterr().err
