"""Tests of the offline-first weights resolution (no network in any case)."""

import os

import pytest
import torch
import torchvision

from examples import weights as shared_weights
from examples.weights import cached_weights_path, resolve_weights


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    return tmp_path


def test_random_prints_notice_and_returns_none(hub_dir, no_network, capsys):
    assert resolve_weights("resnet152", "random") is None
    assert "randomly initialised" in capsys.readouterr().err
    assert no_network == []


def test_cached_checkpoint_is_used_without_network(hub_dir, no_network, capsys):
    expected = torchvision.models.ResNet152_Weights.IMAGENET1K_V1
    path = cached_weights_path(expected)
    assert path == os.path.join(str(hub_dir), "checkpoints", "resnet152-394f9c45.pth")
    os.makedirs(os.path.dirname(path))
    open(path, "wb").close()
    assert resolve_weights("resnet152", "pretrained") is expected
    assert capsys.readouterr().err == ""
    assert no_network == []


def test_failed_download_falls_back_to_random(hub_dir, no_network, capsys):
    assert resolve_weights("resnet18", "pretrained") is None
    err = capsys.readouterr().err
    assert "randomly initialised" in err and "download failed" in err
    assert len(no_network) >= 1  # the download was attempted, and refused


def test_bad_choice_is_rejected():
    with pytest.raises(ValueError, match="--weights"):
        resolve_weights("resnet152", "imagenet")


def test_notice_mentions_the_architecture(capsys):
    shared_weights.print_random_notice("resnet50", "testing")
    assert "resnet50" in capsys.readouterr().err
