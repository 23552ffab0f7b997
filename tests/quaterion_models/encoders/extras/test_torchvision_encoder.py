"""TorchvisionEncoder: classifier removal per architecture, weights-only persistence, errors."""

import json

import pytest
import torch
import torchvision

from quaterion_models import SimilarityModel
from quaterion_models.encoders.extras.torchvision_encoder import TorchvisionEncoder
from quaterion_models.heads import EmptyHead
from quaterion_models.utils import DamagedFileError


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return TorchvisionEncoder("resnet18", image_size=32).eval()


def test_resnet_features_are_the_pooled_layer_before_fc(resnet):
    images = torch.rand(3, 3, 32, 32)
    reference = torchvision.models.resnet18()
    reference.load_state_dict(
        {**resnet.backbone.state_dict(), **reference.fc.state_dict(prefix="fc.")}
    )
    reference.eval()
    # independent computation: the network's layers by hand, stopping before fc
    x = reference.maxpool(reference.relu(reference.bn1(reference.conv1(images))))
    for layer in (reference.layer1, reference.layer2, reference.layer3, reference.layer4):
        x = layer(x)
    expected = torch.flatten(reference.avgpool(x), 1)
    with torch.no_grad():
        torch.testing.assert_close(resnet(images), expected)
    assert resnet.embedding_size == 512 and resnet.trainable is False


def test_sequential_classifier_loses_only_its_last_linear():
    encoder = TorchvisionEncoder("mobilenet_v3_small")
    assert encoder.embedding_size == 1024  # input of the last Linear of the classifier
    assert isinstance(encoder.backbone.classifier[-1], torch.nn.Identity)
    assert isinstance(encoder.backbone.classifier[0], torch.nn.Linear)
    with torch.no_grad():
        assert encoder.eval()(torch.rand(2, 3, 64, 64)).shape == (2, 1024)


def test_servable_round_trip(resnet, tmp_path):
    model = SimilarityModel(resnet, EmptyHead(512))
    images = list(torch.rand(4, 3, 32, 32))
    before = model.encode(images, to_numpy=False)
    model.save(str(tmp_path))
    encoder_dir = tmp_path / "encoders" / "default"
    assert sorted(p.name for p in encoder_dir.iterdir()) == ["config.json", "encoder.pth"]
    assert json.loads((encoder_dir / "config.json").read_text()) == {
        "arch": "resnet18",
        "embedding_size": 512,
        "trainable": False,
        "image_size": 32,
    }
    torch.testing.assert_close(
        SimilarityModel.load(str(tmp_path)).encode(images, to_numpy=False), before
    )


def test_loads_the_cars_example_layout(resnet, tmp_path):
    """A directory with only arch and embedding_size (what examples.cars wrote) loads."""
    resnet.save(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"arch": "resnet18", "embedding_size": 512}))
    loaded = TorchvisionEncoder.load(str(tmp_path))
    assert loaded.trainable is False and loaded.embedding_size == 512


@pytest.mark.parametrize(
    "config,match",
    [
        ({"arch": "resnet18", "embedding_size": "512"}, "'embedding_size'"),
        ({"arch": "resnet18", "embedding_size": 2048}, "'embedding_size'"),
        ({"arch": "os.system", "embedding_size": 512}, "'arch'"),
        ({"arch": "resnet18"}, "embedding_size"),
        ({"arch": "resnet50", "embedding_size": 2048}, "encoder.pth"),
    ],
)
def test_damaged_config_names_the_field(resnet, tmp_path, config, match):
    resnet.save(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(DamagedFileError, match=match):
        TorchvisionEncoder.load(str(tmp_path))


def test_pickled_module_is_refused(resnet, tmp_path):
    resnet.save(str(tmp_path))
    torch.save(resnet.backbone, tmp_path / "encoder.pth")  # a whole pickled module
    with pytest.raises(Exception, match="refusing to load|damaged"):
        TorchvisionEncoder.load(str(tmp_path))


@pytest.mark.parametrize(
    "kwargs,error",
    [({"arch": "not_a_model"}, ValueError), ({"arch": "resnet18", "trainable": 1}, TypeError)],
)
def test_bad_arguments(kwargs, error):
    with pytest.raises(error):
        TorchvisionEncoder(**kwargs)
