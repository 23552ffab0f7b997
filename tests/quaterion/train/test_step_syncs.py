"""Zero host synchronisations per training and validation step, for every loss and metric.

Each setup is a short CPU fit (batch 64) of a tiny model; ``count_step_syncs`` counts the
operations that would make a GPU host wait (see ``quaterion.utils.testing``) inside
``TrainableModel.training_step`` and ``validation_step``. The count of a CPU run is the
count of a GPU run: the counted aten operators are the same on every device.
"""

from typing import Dict

import pytest
import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners

from quaterion import Quaterion
from quaterion.dataset import SimilarityGroupSample, SimilarityPairSample
from quaterion.eval.attached_metric import AttachedMetric
from quaterion.eval.group import RetrievalRPrecision
from quaterion.eval.pair import RetrievalPrecision, RetrievalReciprocalRank
import quaterion.loss as q
from quaterion.loss.extras import PytorchMetricLearningWrapper
from quaterion.train.cache import CacheConfig, CacheType
from quaterion.train.xbm import XbmConfig
from quaterion.utils.testing import count_host_syncs, count_step_syncs
from tests.quaterion.train.helpers import IN_DIM, CountingEncoder, Model, group_loader, trainer
from tests.quaterion.train.helpers import pair_loader

BATCH = 64
GROUPS = 8
WIDTH = 6  # CountingEncoder's output; GatedHead keeps it


def group_data(n: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    data = torch.randn(n, IN_DIM, generator=generator)
    return [SimilarityGroupSample(obj=data[i], group=i % GROUPS) for i in range(n)]


def pair_data(n: int, seed: int, positive_only: bool = False):
    generator = torch.Generator().manual_seed(seed)
    data = torch.randn(2 * n, IN_DIM, generator=generator)
    return [
        SimilarityPairSample(
            obj_a=data[i],
            obj_b=data[n + i],
            score=1.0 if positive_only else float(i % 2),
            subgroup=i % 3,
        )
        for i in range(n)
    ]


def rrp() -> AttachedMetric:
    return AttachedMetric("rrp", RetrievalRPrecision(), on_epoch=True)


def pair_metrics() -> list:
    return [
        AttachedMetric("p1", RetrievalPrecision(k=1), on_epoch=True),
        AttachedMetric("p3", RetrievalPrecision(k=3), on_epoch=True),
        AttachedMetric("rr", RetrievalReciprocalRank(), on_epoch=True),
    ]


# name -> (loss factory, pairs?, metrics factory, xbm)
SETUPS: Dict[str, tuple] = {
    "triplet all": (lambda: q.TripletLoss(mining="all"), False, list, None),
    "triplet hard": (lambda: q.TripletLoss(mining="hard"), False, list, None),
    "triplet semi_hard": (lambda: q.TripletLoss(mining="semi_hard"), False, list, None),
    "triplet soft hard": (lambda: q.TripletLoss(mining="hard", soft=True), False, list, None),
    "online contrastive all": (lambda: q.OnlineContrastiveLoss(mining="all"), False, list, None),
    "online contrastive hard": (lambda: q.OnlineContrastiveLoss(mining="hard"), False, list, None),
    "circle": (q.CircleLoss, False, list, None),
    "fast ap": (q.FastAPLoss, False, list, None),
    "softmax": (lambda: q.SoftmaxLoss(WIDTH, GROUPS), False, list, None),
    "arcface": (lambda: q.ArcFaceLoss(WIDTH, GROUPS), False, list, None),
    "cosface": (lambda: q.CosFaceLoss(WIDTH, GROUPS), False, list, None),
    "center": (lambda: q.CenterLoss(WIDTH, GROUPS), False, list, None),
    "contrastive": (q.ContrastiveLoss, True, list, None),
    "mnrl": (q.MultipleNegativesRankingLoss, True, list, None),
    "triplet + xbm": (
        lambda: q.TripletLoss(mining="hard"),
        False,
        list,
        XbmConfig(buffer_size=96, start_iteration=0),
    ),
    "triplet semi_hard + xbm": (
        lambda: q.TripletLoss(mining="semi_hard"),
        False,
        list,
        XbmConfig(buffer_size=96, start_iteration=0),
    ),
    "triplet + r-precision": (lambda: q.TripletLoss(mining="hard"), False, lambda: [rrp()], None),
    "contrastive + pair metrics": (q.ContrastiveLoss, True, pair_metrics, None),
    "triplet gather_across_ranks": (
        lambda: q.TripletLoss(mining="hard", gather_across_ranks=True),
        False,
        list,
        None,
    ),
    "mnrl gather_across_ranks": (
        lambda: q.MultipleNegativesRankingLoss(gather_across_ranks=True),
        True,
        list,
        None,
    ),
}


def fit_counting(loss, pairs: bool, metrics, xbm, cached: bool, epochs: int = 2):
    """Fit 2 epochs (2 train batches, 1 validation batch each); the step counts."""
    encoder = CountingEncoder(trainable=not cached)
    cache = CacheConfig(cache_type=CacheType.AUTO) if cached else None
    model = Model(
        encoders={"default": encoder},
        cache_config=cache,
        pairs=pairs,
        metrics=metrics,
        xbm=xbm,
        loss=loss,
    )
    if pairs:
        positive = isinstance(loss, q.MultipleNegativesRankingLoss)
        train = pair_loader(pair_data(BATCH, 0, positive), batch_size=BATCH // 2)
        val = pair_loader(pair_data(BATCH // 2, 1, positive), batch_size=BATCH // 2)
    else:
        train = group_loader(group_data(2 * BATCH, 0), batch_size=BATCH)
        val = group_loader(group_data(BATCH, 1), batch_size=BATCH)
    torch.manual_seed(0)
    fit_trainer = trainer(max_epochs=epochs)
    with count_step_syncs(model) as steps:
        Quaterion.fit(model, fit_trainer, train, val)
    return steps, fit_trainer


def syncs_per_step(steps) -> Dict[str, Dict[str, int]]:
    """Per hook, the summed per-op counts (empty when no step synced)."""
    result = {}
    for hook, counts in steps.items():
        merged: Dict[str, int] = {}
        for count in counts:
            for name, value in count.by_op.items():
                merged[name] = merged.get(name, 0) + value
        result[hook] = merged
    return result


# the cached encoder changes only where embeddings come from: a representative subset
CACHED = ["triplet semi_hard", "contrastive", "triplet + xbm", "triplet + r-precision"]
CASES = [(setup, False) for setup in SETUPS] + [(setup, True) for setup in CACHED]


@pytest.mark.parametrize(
    "setup,cached", CASES, ids=[f"{s}-{'cached' if c else 'trainable'}" for s, c in CASES]
)
def test_no_host_sync_in_any_step(setup: str, cached: bool):
    make_loss, pairs, make_metrics, xbm = SETUPS[setup]
    steps, _ = fit_counting(make_loss(), pairs, make_metrics(), xbm, cached)
    assert len(steps["training_step"]) == 4  # 2 epochs x 2 batches
    assert len(steps["validation_step"]) == 2  # 2 epochs x 1 batch
    assert syncs_per_step(steps) == {"training_step": {}, "validation_step": {}}


def test_pml_wrapper_syncs_only_inside_pml():
    """PML's own code syncs (mining by index lists); the wrapper and the step add nothing."""
    inside = []

    def counted(cls):
        """``cls`` whose calls record the syncs made inside them in ``inside``."""

        class Counted(cls):
            def forward(self, *args, **kwargs):
                with count_host_syncs() as count:
                    result = super().forward(*args, **kwargs)
                inside.append(count.total)
                return result

        return Counted

    loss = PytorchMetricLearningWrapper(
        counted(pml_losses.TripletMarginLoss)(), counted(pml_miners.MultiSimilarityMiner)()
    )
    steps, _ = fit_counting(loss, False, [], None, cached=False)
    step_totals = sum(c.total for counts in steps.values() for c in counts)
    assert sum(inside) > 0  # PML itself syncs: documented in the Benchmarks page
    assert step_totals == sum(inside)


class NoGuardModel(Model):
    check_finite_loss = False  # the guard reads CPU losses at once; on CUDA it defers


def fit_total_syncs(batches: int, epochs: int, tmp_path) -> int:
    from pytorch_lightning.loggers import CSVLogger

    model = NoGuardModel(
        encoders={"default": CountingEncoder(trainable=True)},
        metrics=[rrp()],
        loss=q.TripletLoss(mining="hard"),
    )
    train = group_loader(group_data(batches * BATCH, 0), batch_size=BATCH)
    val = group_loader(group_data(batches * BATCH, 1), batch_size=BATCH)
    fit_trainer = trainer(
        max_epochs=epochs,
        logger=CSVLogger(str(tmp_path / f"{batches}-{epochs}")),
        log_every_n_steps=10_000,
    )
    with count_host_syncs() as count:
        Quaterion.fit(model, fit_trainer, train, val)
    assert torch.isfinite(fit_trainer.callback_metrics["rrp_validation"])
    return count.total


def test_what_must_sync_happens_per_epoch_not_per_step(tmp_path):
    """Reading epoch values (loss, metrics) for the logger, loader setup: a fixed number of
    syncs per epoch, the same with 2 or 4 batches per epoch."""
    one_epoch = {batches: fit_total_syncs(batches, 1, tmp_path) for batches in (2, 4)}
    two_epochs = {batches: fit_total_syncs(batches, 2, tmp_path) for batches in (2, 4)}
    assert one_epoch[2] == one_epoch[4]
    assert two_epochs[2] == two_epochs[4]
    assert two_epochs[2] > one_epoch[2]


def test_count_step_syncs_sees_a_sync_added_to_a_step():
    """The table above could not pass by counting nothing: one .item() per step is seen."""

    class Syncing(Model):
        def training_step(self, batch, batch_idx, **kwargs):
            loss = super().training_step(batch, batch_idx, **kwargs)
            float(loss)
            return loss

    model = Syncing(encoders={"default": CountingEncoder(trainable=True)})
    train = group_loader(group_data(2 * BATCH, 0), batch_size=BATCH)
    with count_step_syncs(model) as steps:
        Quaterion.fit(model, trainer(max_epochs=1), train)
    assert [dict(c.by_op) for c in steps["training_step"]] == [{"aten._local_scalar_dense": 1}] * 2
    assert "training_step" not in vars(model)  # the wrapper is removed on exit
