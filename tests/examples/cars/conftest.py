"""Cars fixtures: a tiny ResNet152 stand-in, one image per class per split, and one trained run.

The stand-in replaces ``torchvision.models.resnet152`` through the module attribute (the
examples look it up at call time), keeps ResNet's interface (``weights=`` keyword, an ``fc``
Linear with 2048 inputs) and counts the images it encodes.
"""

import functools
import socket

import pytest
import torch
import torchvision
from torch import nn

from examples.cars import data as cars_data
from examples.cars import train as cars_train
from examples.cars.synthetic import SyntheticStanfordCars

INPUT_SIZE = 32


class TinyResNet(nn.Module):
    """ResNet-shaped stand-in: ``(B, 3, H, W)`` -> ``fc`` over 2048 pooled features."""

    images_seen = 0

    def __init__(self, weights=None, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.expand = nn.Linear(8, 2048)
        self.fc = nn.Linear(2048, 1000)

    def forward(self, x):
        TinyResNet.images_seen += x.shape[0]
        features = self.pool(torch.relu(self.bn(self.conv(x)))).flatten(1)
        return self.fc(self.expand(features))


SmallSyntheticCars = functools.partial(SyntheticStanfordCars, images_per_class=1)


def _patch_stand_ins(patcher):
    patcher.setattr(torchvision.models, "resnet152", TinyResNet)
    patcher.setattr(cars_data, "SyntheticStanfordCars", SmallSyntheticCars)


@pytest.fixture(autouse=True)
def cars_stand_ins(monkeypatch):
    """Every cars test sees the tiny backbone and the 392-image synthetic dataset."""
    _patch_stand_ins(monkeypatch)


def train_argv(save_dir):
    return [
        "--synthetic", "--epochs", "2", "--input-size", str(INPUT_SIZE),
        "--batch-size", "64", "--shuffle", "--save-dir", str(save_dir),
    ]  # fmt: skip


@pytest.fixture(scope="package")
def trained_cars(tmp_path_factory):
    """One ``python -m examples.cars.train --synthetic ...`` run (in process), shared by the
    train, evaluate and serving tests. Returns its working dir, servable dir and image count."""
    workdir = tmp_path_factory.mktemp("cars_run")
    save_dir = workdir / "cars_encoders"
    previous_threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patcher:
        _patch_stand_ins(patcher)
        patcher.chdir(workdir)
        attempts = []

        def refuse(*args, **kwargs):
            attempts.append(args)
            raise OSError("network access attempted")

        patcher.setattr(socket.socket, "connect", refuse)
        patcher.setattr(socket, "getaddrinfo", refuse)
        torch.set_num_threads(1)
        TinyResNet.images_seen = 0
        model = cars_train.main(train_argv(save_dir))
        images_seen = TinyResNet.images_seen
    torch.set_num_threads(previous_threads)
    return {
        "workdir": workdir,
        "save_dir": save_dir,
        "images_seen": images_seen,
        "network_attempts": attempts,
        "model": model,
    }
