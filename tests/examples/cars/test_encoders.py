"""Tests of ``CarsEncoder`` persistence (state dict + JSON config, weights-only loading)."""

import json

import pytest
import torch

from examples.cars.backbone import build_backbone
from examples.cars.encoders import CarsEncoder

from .conftest import TinyResNet


def test_save_load_round_trip(tmp_path):
    backbone, size = build_backbone("resnet152")
    assert isinstance(backbone, TinyResNet) and size == 2048
    assert isinstance(backbone.fc, torch.nn.Identity)
    encoder = CarsEncoder(backbone, arch="resnet152", embedding_size=size).eval()
    assert encoder.trainable is False and encoder.embedding_size == 2048

    encoder.save(str(tmp_path))
    assert json.loads((tmp_path / "config.json").read_text()) == {
        "arch": "resnet152",
        "embedding_size": 2048,
    }
    state = torch.load(tmp_path / "encoder.pth", map_location="cpu", weights_only=True)
    assert state.keys() == backbone.state_dict().keys()

    loaded = CarsEncoder.load(str(tmp_path)).eval()
    images = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(loaded(images), encoder(images))
    assert loaded(images).shape == (4, 2048)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "encoder.pth"]


def test_load_without_config_defaults_to_resnet152(tmp_path):
    backbone, _ = build_backbone("resnet152")
    torch.save(backbone.state_dict(), tmp_path / "encoder.pth")
    loaded = CarsEncoder.load(str(tmp_path))
    assert loaded.embedding_size == 2048


def test_load_of_a_non_encoder_directory_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="encoder.pth"):
        CarsEncoder.load(str(tmp_path))


def test_backbone_without_fc_is_rejected(monkeypatch):
    import torchvision

    monkeypatch.setattr(torchvision.models, "resnet152", lambda weights=None: torch.nn.Identity())
    with pytest.raises(ValueError, match="fc"):
        build_backbone("resnet152")
    with pytest.raises(ValueError, match="arch"):
        build_backbone("not_a_model")
