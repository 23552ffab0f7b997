"""``python -m examples.cifar100.train_with_pytorch_metric_learning`` on synthetic data."""

import math

import torch

from examples.cifar100 import cli
from examples.cifar100 import train_with_pytorch_metric_learning as script
from examples.cifar100.models import PmlModel

from .conftest import SMALL_RUN


def test_arcface_weights_are_optimised(workdir, no_network, monkeypatch):
    captured = {}
    original_init = PmlModel.__init__

    def spy_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        captured["W"] = self.loss._loss.W.detach().clone()
        captured["model"] = self

    monkeypatch.setattr(PmlModel, "__init__", spy_init)
    trainer = script.main(SMALL_RUN)
    model = captured["model"]
    groups = trainer.optimizers[0].param_groups
    assert len(groups) == 2
    assert any(p is model.loss._loss.W for p in groups[1]["params"])
    assert not torch.equal(model.loss._loss.W.detach(), captured["W"])  # the loss weights moved
    assert math.isfinite(float(trainer.callback_metrics["train_loss"]))
    assert no_network == []


def test_epochs_option_defaults_to_ten():
    parser = cli.build_parser("prog", "", epochs_default=10)
    assert cli.parse_args(parser, []).epochs == 10
    assert cli.parse_args(parser, ["--epochs", "2"]).epochs == 2
