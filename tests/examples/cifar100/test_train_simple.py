"""``python -m examples.cifar100.train_simple`` on synthetic data."""

import math

import pytest

from examples.cifar100 import train_simple
from quaterion.loss import OnlineContrastiveLoss, TripletLoss

from .conftest import SMALL_RUN


@pytest.mark.parametrize(
    "loss_fn, loss_type", [("contrastive", OnlineContrastiveLoss), ("triplet", TripletLoss)]
)
def test_one_synthetic_epoch(workdir, no_network, loss_fn, loss_type):
    trainer = train_simple.main(SMALL_RUN + ["--loss-fn", loss_fn])
    assert isinstance(trainer.lightning_module.loss, loss_type)
    assert trainer.current_epoch == 1
    metrics = trainer.callback_metrics
    assert math.isfinite(float(metrics["train_loss"]))
    assert math.isfinite(float(metrics["validation_loss"]))
    assert no_network == []
    assert list((workdir / "lightning_logs").glob("version_*/checkpoints/*.ckpt"))
