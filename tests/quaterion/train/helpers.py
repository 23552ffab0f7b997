"""Tiny encoders, datasets and models shared by the training tests."""

import math
from typing import Any, Dict, List, Optional

import pytorch_lightning as pl
import torch
from torch import nn

from quaterion import TrainableModel
from quaterion.dataset import (
    GroupSimilarityDataLoader,
    PairsSimilarityDataLoader,
    SimilarityGroupSample,
    SimilarityPairSample,
)
from quaterion.loss import ContrastiveLoss, TripletLoss
from quaterion.train.cache import CacheConfig
from quaterion.utils.enums import TrainStage
from quaterion_models.encoders import Encoder
from quaterion_models.heads import GatedHead

IN_DIM = 4
EMB_DIM = 6


def stack_collate(batch: List[Any]) -> torch.Tensor:
    """Records are float tensors ``(IN_DIM,)``; stack them."""
    return torch.stack([torch.as_tensor(x, dtype=torch.float32) for x in batch])


class CountingEncoder(Encoder):
    """Linear encoder that counts the objects it encodes (``calls``)."""

    def __init__(self, trainable: bool = False, seed: int = 0, size: int = EMB_DIM):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.linear = nn.Linear(IN_DIM, size)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(size, IN_DIM, generator=generator))
            self.linear.bias.copy_(torch.randn(size, generator=generator))
        self._trainable = trainable
        self._size = size
        self.calls = 0
        self.batch_sizes = []

    @property
    def trainable(self) -> bool:
        return self._trainable

    @property
    def embedding_size(self) -> int:
        return self._size

    def get_collate_fn(self):
        return stack_collate

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        self.calls += batch.shape[0]
        self.batch_sizes.append(batch.shape[0])
        return self.linear(batch)

    def save(self, output_path: str) -> None:
        torch.save(self.state_dict(), f"{output_path}/weights.pt")

    @classmethod
    def load(cls, input_path: str) -> "CountingEncoder":
        encoder = cls()
        encoder.load_state_dict(
            torch.load(f"{input_path}/weights.pt", map_location="cpu", weights_only=True)
        )
        return encoder


def group_samples(n: int = 24, groups: int = 4, seed: int = 0) -> List[SimilarityGroupSample]:
    generator = torch.Generator().manual_seed(seed)
    data = torch.randn(n, IN_DIM, generator=generator)
    return [SimilarityGroupSample(obj=data[i], group=i % groups) for i in range(n)]


def pair_samples(n: int = 8, seed: int = 1) -> List[SimilarityPairSample]:
    generator = torch.Generator().manual_seed(seed)
    data = torch.randn(2 * n, IN_DIM, generator=generator)
    return [
        SimilarityPairSample(obj_a=data[i], obj_b=data[n + i], score=float(i % 2), subgroup=i % 3)
        for i in range(n)
    ]


class CountingDataset(torch.utils.data.Dataset):
    """List dataset counting ``__getitem__`` calls."""

    def __init__(self, samples):
        self.samples = samples
        self.reads = 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        self.reads += 1
        return self.samples[index]


class Model(TrainableModel):
    """Configurable tiny model: encoders dict, gated head, triplet or contrastive loss."""

    def __init__(
        self,
        encoders: Optional[Dict[str, Encoder]] = None,
        cache_config: Optional[CacheConfig] = None,
        pairs: bool = False,
        lr: float = 0.05,
        metrics=None,
        xbm=None,
        loss=None,
    ):
        self._encoders = encoders if encoders is not None else {"default": CountingEncoder()}
        self._cache_config = cache_config
        self._pairs = pairs
        self._lr = lr
        self._metrics = metrics if metrics is not None else []
        self._xbm = xbm
        self._custom_loss = [loss]
        super().__init__()

    def configure_encoders(self):
        return self._encoders

    def configure_head(self, input_embedding_size: int):
        torch.manual_seed(0)
        return GatedHead(input_embedding_size)

    def configure_loss(self):
        if self._custom_loss[0] is not None:
            return self._custom_loss[0]
        return ContrastiveLoss() if self._pairs else TripletLoss(mining="all")

    def configure_caches(self):
        return self._cache_config

    def configure_metrics(self):
        return self._metrics

    def configure_xbm(self):
        return self._xbm

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self._lr)


def trainer(**kwargs) -> pl.Trainer:
    """CPU trainer without logger, progress bar, summary or checkpoints."""
    options = dict(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
    )
    options.update(kwargs)
    return pl.Trainer(**options)


def group_loader(samples=None, **kwargs) -> GroupSimilarityDataLoader:
    kwargs.setdefault("batch_size", 8)
    return GroupSimilarityDataLoader(samples if samples is not None else group_samples(), **kwargs)


def pair_loader(samples=None, **kwargs) -> PairsSimilarityDataLoader:
    kwargs.setdefault("batch_size", 4)
    return PairsSimilarityDataLoader(samples if samples is not None else pair_samples(), **kwargs)


class LossRecorder(pl.Callback):
    """Keeps the loss of every training step."""

    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(outputs["loss"].detach().clone())


class ValidationRecordingModel(Model):
    """:class:`Model` keeping the embeddings and groups of each validation batch of the
    latest validation epoch in ``batches``."""

    def on_validation_epoch_start(self):
        self.batches = []

    def process_results(self, embeddings, targets, batch_idx, stage, **kwargs):
        if stage == TrainStage.VALIDATION:
            self.batches.append((embeddings.detach().clone(), targets["groups"].clone()))


def naive_r_precision_counts(embeddings: torch.Tensor, groups: torch.Tensor) -> tuple:
    """``(sum of hits, sum of R)`` of one batch's R-precision, cosine, by plain loops."""

    def distance(a, b):
        dot = sum(x * y for x, y in zip(a, b))
        return (1 - dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))) / 2

    rows, groups = embeddings.tolist(), groups.tolist()
    hits = positions = 0
    for i, query in enumerate(rows):
        others = sorted(
            (j for j in range(len(rows)) if j != i), key=lambda j: distance(query, rows[j])
        )
        relevant = sum(groups[j] == groups[i] for j in others)
        hits += sum(groups[j] == groups[i] for j in others[:relevant])
        positions += relevant
    return hits, positions


def epoch_mean_of_defined_batches(batches) -> float:
    """Batch-size-weighted mean R-precision over the batches where it is defined."""
    total = weight = 0.0
    for embeddings, groups in batches:
        hits, positions = naive_r_precision_counts(embeddings, groups)
        if positions:
            total += hits / positions * len(groups)
            weight += len(groups)
    return total / weight
