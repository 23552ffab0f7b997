"""Tests of the cars datasets and loaders (synthetic data, real-data error path)."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import ConcatDataset, Dataset, Subset

from examples.cars import data as cars_data
from examples.cars.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DataNotFoundError,
    get_dataloaders,
    get_datasets,
    get_raw_dataset,
    read_labels,
)
from quaterion.dataset import SimilarityGroupSample
from tests._datasets import ListDataset


def _groups(dataset):
    return [dataset[i].group for i in range(len(dataset))]


def test_datasets_split_classes_in_halves(workdir):
    train, test = get_datasets(32, synthetic=True)
    assert len(train) + len(test) == 392
    train_groups, test_groups = set(_groups(train)), set(_groups(test))
    assert len(train_groups) == len(test_groups) == 98
    assert not train_groups & test_groups
    assert (workdir / "split_cache_synthetic_seed42.pkl").is_file()

    sample = train[0]
    assert isinstance(sample, SimilarityGroupSample) and isinstance(sample.group, int)
    assert sample.obj.shape == (3, 32, 32) and sample.obj.dtype == torch.float32
    # ImageNet normalisation of a [0, 1] image.
    low = (0 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    high = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert (sample.obj >= low[:, None, None] - 1e-5).all()
    assert (sample.obj <= high[:, None, None] + 1e-5).all()

    again_train, again_test = get_datasets(32, synthetic=True)
    assert again_train._dataset.indices == train._dataset.indices
    assert again_test._dataset.indices == test._dataset.indices


def test_dataloaders_yield_group_batches(workdir):
    train_loader, val_loader = get_dataloaders(batch_size=16, input_size=32, synthetic=True)
    ids, features, labels = next(iter(val_loader))
    assert len(ids) == len(features) == 16
    assert labels["groups"].dtype == torch.long and labels["groups"].shape == (16,)
    assert len(train_loader.dataset) == 196


def test_raw_dataset_keeps_the_split_and_gives_pil_images(workdir):
    train, test = get_datasets(32, synthetic=True)
    raw_train, raw_test = get_raw_dataset(40, synthetic=True)
    assert raw_test.indices == test._dataset.indices
    image, label = raw_test[3]
    assert isinstance(image, Image.Image) and image.size == (40, 40)
    assert label == test[3].group


def test_missing_real_data_names_the_options(tmp_path):
    with pytest.raises(DataNotFoundError) as error:
        get_datasets(32, split_cache_path=None, data_dir=str(tmp_path))
    assert "--data-dir" in str(error.value) and "--synthetic" in str(error.value)
    assert isinstance(error.value, FileNotFoundError)


def test_real_dataset_class_is_looked_up_at_call_time(monkeypatch, tmp_path):
    created = []

    class FakeStanfordCars(Dataset):
        def __init__(self, root, split="train", download=False, **kwargs):
            created.append((root, split, download))
            self._samples = [(f"{split}{i}.jpg", i % 196) for i in range(196)]

        def __len__(self):
            return len(self._samples)

        def __getitem__(self, index):
            return Image.new("RGB", (8, 8)), self._samples[index][1]

    monkeypatch.setattr(cars_data.torchvision.datasets, "StanfordCars", FakeStanfordCars)
    train, test = get_datasets(16, split_cache_path=None, data_dir=str(tmp_path))
    assert created == [(str(tmp_path), "train", False), (str(tmp_path), "test", False)]
    assert len(train) == len(test) == 196


class _NoDecode(ListDataset):
    """Labels only through the attribute named ``attribute``; decoding an item is an error."""

    def __init__(self, attribute, values):
        super().__init__(values)
        setattr(self, attribute, values)

    def __getitem__(self, index):
        raise AssertionError("read_labels decoded an image")


def test_read_labels_avoids_decoding_when_possible():
    full = ConcatDataset(
        [
            _NoDecode("targets", [1, 0, 3]),
            _NoDecode("_samples", [("a.jpg", 5), ("b.jpg", 2)]),  # torchvision's StanfordCars
            ListDataset([(None, 9), (None, 8)]),  # labels only by reading items
        ]
    )
    np.testing.assert_array_equal(read_labels(full), [1, 0, 3, 5, 2, 9, 8])
    np.testing.assert_array_equal(read_labels(Subset(full, [6, 0, 3])), [8, 1, 5])


def test_augment_draws_new_crops_of_training_images_only(workdir):
    plain_train, plain_test = get_datasets(32, synthetic=True)
    train, test = get_datasets(32, synthetic=True, augment=True)
    torch.manual_seed(0)
    first, second = train[0].obj, train[0].obj
    assert first.shape == plain_train[0].obj.shape == (3, 32, 32)
    assert (first - second).abs().max() > 1e-3  # a new random crop or flip at each read
    torch.manual_seed(0)
    torch.testing.assert_close(train[0].obj, first)  # drawn from torch's random state
    torch.testing.assert_close(test[0].obj, plain_test[0].obj)  # test images are not augmented
