"""Stanford Cars (or its synthetic stand-in) as class-disjoint similarity datasets.

Nothing happens at import: the split is reproducible because it is drawn from a
``numpy.random.default_rng(seed)``, not from a globally seeded RNG.
"""

import os
from functools import partial
from typing import Any, Callable, Optional, Tuple

import numpy as np
import torchvision
from torch.utils.data import ConcatDataset, Dataset, Subset
from torchvision import transforms

from quaterion.dataset import GroupSimilarityDataLoader, SimilarityGroupSample

from .config import DATASET_PATH, DEFAULT_SEED, SPLIT_CACHE_PATH
from .split import keyed_split_path, load_or_create_split
from .synthetic import SyntheticStanfordCars

dataset_path = DATASET_PATH
NUM_CLASSES = 196
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


class DataNotFoundError(FileNotFoundError):
    """Raised when real Stanford Cars data is not where ``--data-dir`` points."""


class CarsDataset(Dataset):
    """Item ``i``: ``SimilarityGroupSample(obj=transform(image), group=label)`` of ``dataset[i]``."""

    def __init__(self, dataset: Dataset, transform: Callable) -> None:
        self._dataset = dataset
        self._transform = transform

    def __len__(self) -> int:
        return len(self._dataset)

    def __getitem__(self, index: int) -> SimilarityGroupSample:
        image, label = self._dataset[index]
        return SimilarityGroupSample(obj=self._transform(image), group=int(label))


class _TransformedDataset(CarsDataset):
    """Item ``i``: ``(transform(image), int(label))``."""

    def __getitem__(self, index: int) -> Tuple[Any, int]:
        sample = super().__getitem__(index)
        return sample.obj, sample.group


def data_source(synthetic: bool) -> str:
    """``"synthetic"``, ``"synthetic-hard"`` (``synthetic="hard"``) or ``"real"``: keys split
    files and cache directories."""
    if not synthetic:
        return "real"
    return "synthetic-hard" if synthetic == "hard" else "synthetic"


def load_full_dataset(data_dir: str = DATASET_PATH, synthetic: bool = False) -> ConcatDataset:
    """Train + test splits concatenated (16,185 PIL images and labels 0..195 for real data).

    Real data is read with ``torchvision.datasets.StanfordCars(root=data_dir, download=False)``
    (looked up at call time); ``synthetic`` uses :class:`SyntheticStanfordCars`.

    Raises:
        DataNotFoundError: real data is missing; the message names ``--data-dir`` and ``--synthetic``.
    """
    if synthetic:
        cls: Callable[..., Dataset] = partial(SyntheticStanfordCars, hard=synthetic == "hard")
    else:
        cls = torchvision.datasets.StanfordCars
    try:
        parts = [cls(root=data_dir, split=split, download=False) for split in ("train", "test")]
    except RuntimeError as exc:
        root = os.path.join(os.path.abspath(data_dir), "stanford_cars")
        raise DataNotFoundError(
            f"Stanford Cars was not found under {root} ({exc}). torchvision can no longer "
            "download it: place devkit/cars_train_annos.mat, devkit/cars_meta.mat, cars_train/, "
            "cars_test/ and cars_test_annos_withlabels.mat there by hand and pass "
            "--data-dir <directory containing stanford_cars>, or run with --synthetic to use a "
            "small generated dataset offline."
        ) from exc
    return ConcatDataset(parts)


def read_labels(dataset: Dataset) -> np.ndarray:
    """Labels of every item as int64; avoids decoding images where the dataset allows it
    (``targets`` attribute, torchvision's ``StanfordCars._samples``), else indexes every item."""
    if isinstance(dataset, ConcatDataset):
        return np.concatenate([read_labels(part) for part in dataset.datasets])
    if isinstance(dataset, Subset):
        return read_labels(dataset.dataset)[np.asarray(dataset.indices, dtype=np.int64)]
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return np.asarray(targets, dtype=np.int64)
    samples = getattr(dataset, "_samples", None)
    if samples is not None:
        return np.asarray([label for _, label in samples], dtype=np.int64)
    return np.asarray([dataset[i][1] for i in range(len(dataset))], dtype=np.int64)


def get_split(
    full: Dataset, split_cache_path: Optional[str], synthetic: bool, seed: int
) -> Tuple[np.ndarray, np.ndarray]:
    """Class-disjoint ``(train_indices, test_indices)`` of ``full``, through the checked cache
    file ``keyed_split_path(split_cache_path, source, seed)`` (no file if the path is falsy)."""
    source = data_source(synthetic)
    path = keyed_split_path(split_cache_path, source, seed) if split_cache_path else None
    return load_or_create_split(path, read_labels(full), NUM_CLASSES, seed, source)


def _load_split(split_cache_path, data_dir=DATASET_PATH, synthetic=False, seed=DEFAULT_SEED):
    """The full dataset and its class-disjoint train and test index lists."""
    full = load_full_dataset(data_dir, synthetic)
    train_idx, test_idx = get_split(full, split_cache_path, synthetic, seed)
    return full, train_idx.tolist(), test_idx.tolist()


def _tensor_transform(input_size: int) -> Callable:
    return transforms.Compose(
        [
            transforms.Resize((input_size, input_size)),
            transforms.ToTensor(),
            transforms.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
        ]
    )


def _augmenting_transform(input_size: int) -> Callable:
    """The training augmentations: a random crop of 70-100% of the image and a random
    horizontal flip, then :func:`_tensor_transform`'s resize and normalisation."""
    return transforms.Compose(
        [
            transforms.RandomResizedCrop((input_size, input_size), scale=(0.7, 1.0)),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
        ]
    )


def get_datasets(
    input_size: int,
    split_cache_path: Optional[str] = SPLIT_CACHE_PATH,
    *,
    data_dir: str = DATASET_PATH,
    synthetic: bool = False,
    seed: int = DEFAULT_SEED,
    augment: bool = False,
) -> Tuple[CarsDataset, CarsDataset]:
    """Train and test :class:`CarsDataset` over disjoint halves of the 196 classes; images are
    resized to ``(input_size, input_size)`` float tensors normalised with ImageNet statistics
    (``augment``: random crops and flips of the training images first)."""
    full, train_idx, test_idx = _load_split(split_cache_path, data_dir, synthetic, seed)
    transform = _tensor_transform(input_size)
    train_transform = _augmenting_transform(input_size) if augment else transform
    return (
        CarsDataset(Subset(full, train_idx), train_transform),
        CarsDataset(Subset(full, test_idx), transform),
    )


def get_dataloaders(
    batch_size: int,
    input_size: int,
    shuffle: bool = False,
    split_cache_path: Optional[str] = SPLIT_CACHE_PATH,
    **source: Any,
) -> Tuple[GroupSimilarityDataLoader, GroupSimilarityDataLoader]:
    """Train and test ``GroupSimilarityDataLoader`` over :func:`get_datasets` (``source``:
    its ``data_dir``, ``synthetic``, ``seed`` and ``augment``); ``num_workers=0`` keeps the
    full cache possible."""
    train, test = get_datasets(input_size, split_cache_path, **source)
    return (
        GroupSimilarityDataLoader(train, batch_size=batch_size, shuffle=shuffle),
        GroupSimilarityDataLoader(test, batch_size=batch_size, shuffle=False),
    )


def get_raw_dataset(
    input_size: int, split_cache_path: Optional[str] = SPLIT_CACHE_PATH, **source: Any
) -> Tuple[Subset, Subset]:
    """The same split as :func:`get_datasets` (``source``: its ``data_dir``, ``synthetic`` and
    ``seed``), with PIL images resized keeping their aspect ratio
    (``Resize(input_size, max_size=input_size + 1)``); items are ``(image, int label)``."""
    full, train_idx, test_idx = _load_split(split_cache_path, **source)
    raw = _TransformedDataset(full, transforms.Resize(input_size, max_size=input_size + 1))
    return Subset(raw, train_idx), Subset(raw, test_idx)
