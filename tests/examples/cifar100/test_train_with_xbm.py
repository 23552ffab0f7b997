"""``python -m examples.cifar100.train_with_xbm`` on synthetic data, with XBM switched on early."""

import math

import torch

from examples.cifar100 import train_with_xbm
from examples.cifar100.models import XbmModel
from quaterion.loss import TripletLoss
from quaterion.train.xbm import XbmConfig

from .conftest import SMALL_RUN


def test_memory_loss_is_added(workdir, no_network, monkeypatch):
    calls = []
    original = TripletLoss.xbm_loss

    def spy(self, embeddings, groups, memory_embeddings, memory_groups):
        value = original(self, embeddings, groups, memory_embeddings, memory_groups)
        calls.append((memory_embeddings.shape[0], float(value.detach())))
        return value

    monkeypatch.setattr(TripletLoss, "xbm_loss", spy)
    trainer = train_with_xbm.main(
        SMALL_RUN + ["--xbm-start-iteration", "0", "--xbm-buffer-size", "128"]
    )
    # 200 items / batch 64 -> 4 steps (0..3); XBM runs at steps 1..3, memory read before queueing.
    assert [size for size, _ in calls] == [0, 64, 128]
    assert calls[0][1] == 0.0
    assert any(value > 0 for _, value in calls[1:])
    metrics = trainer.callback_metrics
    assert math.isfinite(float(metrics["train_loss"]))
    assert 0.0 <= float(metrics["rrp_validation"]) <= 1.0
    assert no_network == []


def test_xbm_options(workdir):
    model = XbmModel(8, 1e-4, XbmConfig(buffer_size=32, start_iteration=5), weights=None)
    config = model.configure_xbm()
    assert (config.buffer_size, config.start_iteration, config.weight) == (32, 5, 1.0)
    optimizer = model.configure_optimizers()
    assert optimizer.defaults["weight_decay"] == 0.0005
    assert isinstance(optimizer, torch.optim.Adam)
