"""End-to-end DDP fits, run as ``python -m tests.quaterion.distributed.ddp_fit_script OUT``.

Lightning's ``strategy="ddp"`` re-launches this module once per extra rank; every rank runs
all scenarios in order and saves what it saw to ``OUT/rank<r>.pt``:

1. ``group``: group loader + validation + an attached metric + XBM + gathered negatives,
   2 epochs with checkpoints, then ``save_servable`` (written by rank 0 only, seen by
   every rank after a barrier);
2. ``resume``: a fresh model resumed from the last checkpoint for a third epoch;
   ``resume_inside``: the fit of 1. stopped inside its second epoch (``max_steps``), then
   resumed from that step's checkpoint to the end of the epoch;
3. ``pairs``: pair loader, no validation;
4. ``defaults``: ``Quaterion.trainer_defaults`` overridden to 2 CPU devices;
5. ``undefined``: an attached R-precision that is undefined (singleton groups only) on one
   validation batch of rank 1.

Also importable: :func:`group_model`, :func:`group_loaders` build the one-process reference.
"""

import os
import sys
import warnings

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch.utils.data import DistributedSampler

from quaterion import Quaterion
from quaterion.dataset import SimilarityGroupSample, SimilarityPairSample
from quaterion.eval.attached_metric import AttachedMetric
from quaterion.eval.group import RetrievalRPrecision
from quaterion.loss import ContrastiveLoss
from quaterion.train.xbm import XbmConfig, XbmDevice
from tests.quaterion.train.helpers import (
    IN_DIM,
    CountingEncoder,
    Model,
    RecordingTriplet,
    ValidationRecordingModel,
    group_loader,
    group_samples,
    pair_loader,
)
from tests.quaterion.train.helpers import trainer as quiet_trainer

WORLD = 2
BATCH = 4  # per rank; the one-process reference uses WORLD * BATCH
TRAIN_SIZE, VAL_SIZE = 32, 16  # divisible by WORLD * BATCH: no sampler padding
STOP_STEP = 6  # inside the second epoch of 4 steps
XBM = XbmConfig(weight=0.5, buffer_size=64, start_iteration=0, device=XbmDevice.CPU)


# Validation under DDP is not shuffled: rank r reads items r, r + WORLD, ... in batches of
# BATCH. Rank 0: [0, 2, 4, 6], [8, ..., 14]; rank 1: [1, 3, 5, 7] (four singleton groups: no
# query has a relevant item), [9, ..., 15].
UNDEFINED_VAL_GROUPS = [0, 10, 0, 11, 1, 12, 1, 13, 2, 4, 2, 4, 2, 5, 3, 6]


def group_model() -> Model:
    return Model(
        encoders={"default": CountingEncoder(trainable=True)},
        loss=RecordingTriplet(mining="hard", gather_across_ranks=True),
        metrics=[AttachedMetric("rrp", RetrievalRPrecision(), on_epoch=True)],
        xbm=XBM,
        lr=0.1,
    )


def group_loaders(batch_size: int, one_process_reference: bool = False):
    """Train and validation loaders.

    Under DDP Lightning always shuffles the training set (a ``DistributedSampler`` with seed
    0, ``set_epoch`` every epoch), so a step's global batch is a slice of
    ``randperm(n, seed + epoch)``. The one-process reference draws the same permutation
    (a one-replica ``DistributedSampler``), so its batch of ``WORLD * BATCH`` rows holds
    exactly the rows of the DDP step.
    """
    train_samples = group_samples(TRAIN_SIZE, groups=4, seed=0)
    options = {"batch_size": batch_size}
    if one_process_reference:
        options["sampler"] = DistributedSampler(train_samples, num_replicas=1, rank=0, seed=0)
    train = group_loader(train_samples, **options)
    val = group_loader(group_samples(VAL_SIZE, groups=4, seed=1), batch_size=batch_size)
    return train, val


def probe_inputs() -> list:
    return list(torch.randn(6, IN_DIM, generator=torch.Generator().manual_seed(5)))


def ddp_trainer(**kwargs) -> pl.Trainer:
    """The tests' quiet CPU trainer on ``WORLD`` processes with ``strategy="ddp"``."""
    return quiet_trainer(**{"devices": WORLD, "strategy": "ddp", **kwargs})


def metrics_of(trainer: pl.Trainer) -> dict:
    return {key: value.detach().clone() for key, value in trainer.callback_metrics.items()}


class StartRecorder(pl.Callback):
    """What the resumed run starts from."""

    def on_train_start(self, trainer, pl_module):
        self.global_step = trainer.global_step
        self.epoch = trainer.current_epoch
        self.weights = {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}


def stopped_and_resumed_inside_an_epoch(out: str) -> dict:
    """Scenario 1's fit stopped after ``STOP_STEP`` steps, resumed from that step's
    checkpoint to the end of epoch 2: its weights, and the warnings about the batch order."""
    directory = os.path.join(out, "inside")
    every_step = ModelCheckpoint(dirpath=directory, every_n_train_steps=1, save_top_k=-1)
    trainer = ddp_trainer(
        max_epochs=2, max_steps=STOP_STEP, enable_checkpointing=True, callbacks=[every_step]
    )
    Quaterion.fit(group_model(), trainer, *group_loaders(BATCH))
    resumed = group_model()
    path = os.path.join(directory, f"epoch=1-step={STOP_STEP}.ckpt")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Quaterion.fit(resumed, ddp_trainer(max_epochs=2), *group_loaders(BATCH), ckpt_path=path)
    return {
        "weights": {k: v.detach().clone() for k, v in resumed.model.state_dict().items()},
        "warnings": [str(w.message) for w in caught if "resumed" in str(w.message)],
    }


def main(out: str) -> None:
    results = {}
    # 1. group loader, validation, metric, XBM, gathered negatives, checkpoints, servable
    model = group_model()
    train, val = group_loaders(BATCH)
    checkpoints = ModelCheckpoint(dirpath=os.path.join(out, "ckpt"), save_last=True)
    trainer = ddp_trainer(max_epochs=2, enable_checkpointing=True, callbacks=[checkpoints])
    Quaterion.fit(model, trainer, train, val)
    rank = trainer.global_rank
    model.save_servable(os.path.join(out, "servable"))  # rank 0 writes, the others return
    # save_servable takes no collective: a rank that reads the files waits for rank 0 itself
    trainer.strategy.barrier()
    results["servable_seen_by_every_rank"] = os.path.isfile(
        os.path.join(out, "servable", "config.json")
    )
    results["group"] = {
        "metrics": metrics_of(trainer),
        "global_step": trainer.global_step,
        "memories": model.loss.memories,
        "weights": {k: v.detach().clone() for k, v in model.model.state_dict().items()},
    }
    # 2. resume from the last checkpoint for one more epoch
    resumed = group_model()
    start = StartRecorder()
    trainer = ddp_trainer(max_epochs=3, callbacks=[start])
    train, val = group_loaders(BATCH)
    Quaterion.fit(resumed, trainer, train, val, ckpt_path=checkpoints.last_model_path)
    results["resume"] = {
        "start_step": start.global_step,
        "start_epoch": start.epoch,
        "start_weights": start.weights,
        "global_step": trainer.global_step,
        "epoch": trainer.current_epoch,
    }
    results["resume_inside"] = stopped_and_resumed_inside_an_epoch(out)
    # 3. pair loader, no validation
    samples = [
        SimilarityPairSample(obj_a=a, obj_b=b, score=float(i % 2), subgroup=0)
        for i, (a, b) in enumerate(zip(torch.randn(16, IN_DIM), torch.randn(16, IN_DIM)))
    ]
    pairs_model = Model(
        encoders={"default": CountingEncoder(trainable=True)},
        pairs=True,
        loss=ContrastiveLoss(),
        lr=0.1,
    )
    trainer = ddp_trainer(max_epochs=1)
    Quaterion.fit(pairs_model, trainer, pair_loader(samples, batch_size=2))
    results["pairs"] = {"global_step": trainer.global_step}
    # 4. the trainer defaults, overridden to several devices
    defaults_model = group_model()
    train, val = group_loaders(BATCH)
    options = Quaterion.trainer_defaults(defaults_model, train)
    options.update(
        accelerator="cpu",
        devices=WORLD,
        strategy="ddp",
        max_epochs=2,
        logger=False,
        default_root_dir=os.path.join(out, "defaults"),
    )
    trainer = pl.Trainer(**options)
    Quaterion.fit(defaults_model, trainer, train, val)
    results["defaults"] = {"global_step": trainer.global_step, "metrics": metrics_of(trainer)}
    # 5. a metric undefined on some validation batches
    generator = torch.Generator().manual_seed(7)
    val_samples = [
        SimilarityGroupSample(obj=torch.randn(IN_DIM, generator=generator), group=group)
        for group in UNDEFINED_VAL_GROUPS
    ]
    recording = ValidationRecordingModel(
        encoders={"default": CountingEncoder(trainable=True)},
        metrics=[AttachedMetric("rrp", RetrievalRPrecision(), on_epoch=True)],
    )
    trainer = ddp_trainer(max_epochs=1)
    train, _ = group_loaders(BATCH)
    Quaterion.fit(recording, trainer, train, group_loader(val_samples, batch_size=BATCH))
    results["undefined"] = {"metrics": metrics_of(trainer), "batches": recording.batches}
    torch.save(results, os.path.join(out, f"rank{rank}.pt"))


if __name__ == "__main__":
    main(sys.argv[1])
