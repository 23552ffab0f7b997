"""CIFAR-100 (or its synthetic stand-in) as group similarity loaders, and the MobileNetV3 encoder."""

import os
import sys

try:
    import torchvision
    from torchvision import transforms
except ImportError:
    print(
        "The cifar100 examples need torchvision: pip install 'quaterion[examples]' or "
        "pip install torchvision",
        file=sys.stderr,
    )
    sys.exit(1)

from typing import Callable, Tuple, Union

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from quaterion import TrainableModel
from quaterion.dataset import GroupSimilarityDataLoader, SimilarityGroupDataset
from quaterion_models.encoders import Encoder
from quaterion_models.heads import EmptyHead, EncoderHead

from .config import DATASET_PATH, SYNTHETIC_TRAIN_SIZE
from .synthetic import NUM_CLASSES, SyntheticCIFAR100
from examples.weights import resolve_weights

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
# "pretrained" / "random" (resolved offline-first), or a resolved weights member / None.
Weights = Union[str, "torchvision.models.WeightsEnum", None]


class DataNotFoundError(FileNotFoundError):
    """Raised when CIFAR-100 is not under ``--data-dir`` and no download was requested."""


def _cifar100(data_dir: str, train: bool, transform: Callable, download: bool) -> Dataset:
    cls = torchvision.datasets.CIFAR100
    try:
        return cls(root=data_dir, train=train, transform=transform, download=False)
    except RuntimeError as exc:
        if download:
            return cls(root=data_dir, train=train, transform=transform, download=True)
        raise DataNotFoundError(
            f"CIFAR-100 was not found under {os.path.abspath(data_dir)} ({exc}). Pass "
            "--data-dir <directory containing cifar-100-python>, add --download to fetch it "
            "there, or run with --synthetic to use a small generated dataset offline."
        ) from exc


def get_datasets(
    data_dir: str = DATASET_PATH,
    synthetic: bool = False,
    download: bool = False,
    synthetic_size: int = SYNTHETIC_TRAIN_SIZE,
) -> Tuple[SimilarityGroupDataset, SimilarityGroupDataset]:
    """Train (random crop + flip) and validation ``SimilarityGroupDataset`` of normalised
    ``(3, 32, 32)`` tensors. ``synthetic`` uses :class:`SyntheticCIFAR100` with
    ``synthetic_size`` train items and ``max(synthetic_size // 4, 200)`` validation items (at
    least two per class, so every validation query has a relevant item)."""
    normalize = transforms.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD)
    train_transform = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            normalize,
        ]
    )
    val_transform = transforms.Compose([transforms.ToTensor(), normalize])
    if synthetic:
        val_size = max(synthetic_size // 4, 2 * NUM_CLASSES)
        train = SyntheticCIFAR100(train=True, transform=train_transform, num_samples=synthetic_size)
        val = SyntheticCIFAR100(train=False, transform=val_transform, num_samples=val_size)
    else:
        train = _cifar100(data_dir, True, train_transform, download)
        val = _cifar100(data_dir, False, val_transform, download)
    return SimilarityGroupDataset(train), SimilarityGroupDataset(val)


def get_dataloaders(
    batch_size: int = 128,
    *,
    data_dir: str = DATASET_PATH,
    synthetic: bool = False,
    download: bool = False,
    synthetic_size: int = SYNTHETIC_TRAIN_SIZE,
    processes: int = 1,
) -> Tuple[GroupSimilarityDataLoader, GroupSimilarityDataLoader]:
    """Shuffled train loader with ``batch_size`` and a validation loader with batch size 256.

    When the training items leave a last batch of one image, that image is dropped each
    epoch (a different one, the order being shuffled): MobileNetV3's batch norm cannot train
    on a batch of one, and no loss has a pair in it. With ``processes`` > 1 (DDP) it is each
    process's share that counts: Lightning's distributed sampler gives every process
    ``ceil(N / processes)`` items.
    """
    train, val = get_datasets(data_dir, synthetic, download, synthetic_size)
    if len(train) < 2:
        raise ValueError(
            f"training needs at least 2 images, got {len(train)}; raise --synthetic-size"
        )
    lone_last = -(-len(train) // processes) % batch_size == 1
    return (
        GroupSimilarityDataLoader(train, batch_size=batch_size, shuffle=True, drop_last=lone_last),
        GroupSimilarityDataLoader(val, batch_size=256, shuffle=False),
    )


class MobilenetV3Encoder(Encoder):
    """Trainable ``mobilenet_v3_small`` whose classifier is ``Sequential(Linear(576, embedding_size))``.

    Maps float ``(B, 3, H, W)`` to ``(B, embedding_size)``. ``weights`` is ``"pretrained"`` /
    ``"random"`` (resolved offline-first) or a resolved weights member / ``None``.
    No ``save``/``load``: these scripts never save a servable.
    """

    def __init__(self, embedding_size: int, weights: Weights = "pretrained") -> None:
        super().__init__()
        if isinstance(weights, str):
            weights = resolve_weights("mobilenet_v3_small", weights)
        self.encoder = torchvision.models.mobilenet_v3_small(weights=weights)
        self.encoder.classifier = nn.Sequential(nn.Linear(576, embedding_size))

    @property
    def trainable(self) -> bool:
        """Fine-tuned end to end: no cache, every epoch runs the whole network."""
        return True

    @property
    def embedding_size(self) -> int:
        return self.encoder.classifier[0].out_features

    def forward(self, images: Tensor) -> Tensor:
        return self.encoder(images)


class MobilenetV3Model(TrainableModel):
    """What the three scripts share: :class:`MobilenetV3Encoder`, ``EmptyHead`` and Adam.

    A script subclasses it and adds ``configure_loss`` (and XBM, metrics or its own optimiser).

    Args:
        embedding_size: width of the encoder's output layer.
        lr: Adam learning rate.
        weights: ``"pretrained"`` / ``"random"`` or a resolved weights member / ``None``.
    """

    def __init__(self, embedding_size: int, lr: float, weights: Weights = "pretrained") -> None:
        self._embedding_size = embedding_size
        self._lr = lr
        self._weights = weights
        super().__init__()

    def configure_encoders(self) -> Encoder:
        return MobilenetV3Encoder(self._embedding_size, weights=self._weights)

    def configure_head(self, input_embedding_size: int) -> EncoderHead:
        return EmptyHead(input_embedding_size)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.model.parameters(), lr=self._lr)
