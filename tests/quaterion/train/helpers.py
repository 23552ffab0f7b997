"""Tiny encoders, datasets and models shared by the training tests."""

import math
from typing import Any, Dict, List, Optional

import pytorch_lightning as pl
import torch
from torch import nn

from quaterion import Quaterion, TrainableModel
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
from tests.quaterion_models.toy_encoders import ToyEncoder

IN_DIM = 4
EMB_DIM = 6


def stack_collate(batch: List[Any]) -> torch.Tensor:
    """Records are float tensors ``(IN_DIM,)``; stack them."""
    return torch.stack([torch.as_tensor(x, dtype=torch.float32) for x in batch])


class CountingEncoder(ToyEncoder):
    """Linear encoder that counts the objects it encodes (``calls``)."""

    def __init__(self, trainable: bool = False, seed: int = 0, size: int = EMB_DIM):
        super().__init__(size, trainable, {"trainable": trainable, "seed": seed, "size": size})
        generator = torch.Generator().manual_seed(seed)
        self.linear = nn.Linear(IN_DIM, size)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(size, IN_DIM, generator=generator))
            self.linear.bias.copy_(torch.randn(size, generator=generator))
        self.calls = 0
        self.batch_sizes = []

    def get_collate_fn(self):
        return stack_collate

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        self.calls += batch.shape[0]
        self.batch_sizes.append(batch.shape[0])
        return self.linear(batch)


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


class RecordingTriplet(TripletLoss):
    """Triplet loss that keeps every cross-batch memory it is handed (``memories``)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.memories = []

    def xbm_loss(self, embeddings, groups, memory_embeddings, memory_groups, **masks):
        # masks (valid / memory_valid): padded rows of batches gathered across ranks
        self.memories.append((memory_embeddings.detach().clone(), memory_groups.clone()))
        return super().xbm_loss(embeddings, groups, memory_embeddings, memory_groups, **masks)


class LossRecorder(pl.Callback):
    """Keeps the loss of every training step."""

    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(outputs["loss"].detach().clone())


class StoreRecorder(pl.Callback):
    """At train start, per cached encoder: ``(class, offset_map, copy of the rows)``."""

    def __init__(self):
        self.stores = {}

    def on_train_start(self, trainer, pl_module):
        for name, cached in pl_module.model.encoders.items():
            self.stores[name] = (type(cached), dict(cached.offset_map), cached.cache.clone())


def fit_losses(model, train, val=None, callbacks=(), ckpt_path=None, **trainer_kwargs):
    """``Quaterion.fit`` on :func:`trainer` from ``torch.manual_seed(0)``: every step's loss."""
    recorder = LossRecorder()
    torch.manual_seed(0)
    fit_trainer = trainer(callbacks=[recorder, *callbacks], **trainer_kwargs)
    Quaterion.fit(model, fit_trainer, train, val, ckpt_path=ckpt_path)
    return torch.stack(recorder.losses) if recorder.losses else torch.empty(0)


def assert_weights_of_a_shorter_fit(model, make_model, samples) -> None:
    """``model``'s weights are finite and equal those of ``make_model()`` fit on ``samples``
    alone (a guard that stopped a fit before applying a bad step leaves them so)."""
    reference = make_model()
    Quaterion.fit(reference, trainer(), group_loader(samples))
    for got, expected in zip(model.parameters(), reference.parameters()):
        assert bool(torch.isfinite(got).all())
        torch.testing.assert_close(got, expected)


def fit_data(pairs: bool = False, n: Optional[int] = None, val: bool = True, shuffle=True):
    """The counted datasets the cache tests fit on and their loaders: 24 group samples (or
    12 pairs) to train on, 8 (or 4) to validate on; ``((train, val), (loader, loader))``."""
    if pairs:
        data = CountingDataset(pair_samples(n or 12)), CountingDataset(pair_samples(4, seed=5))
        make = pair_loader
    else:
        data = CountingDataset(group_samples(n or 24)), CountingDataset(group_samples(8, seed=3))
        make = group_loader
    return data, (make(data[0], shuffle=shuffle), make(data[1]) if val else None)


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
