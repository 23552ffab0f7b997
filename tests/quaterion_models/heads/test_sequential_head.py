import json

import pytest
import torch
from torch import nn

from quaterion_models import SimilarityModel
from quaterion_models.heads import SequentialHead
from quaterion_models.utils import DamagedFileError, UnsafeFileError
from tests.quaterion_models.toy_encoders import ScaleLayer, StackEncoder


def make_head():
    return SequentialHead(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 10), output_size=10)


def test_forward_is_the_sequential_without_dropout():
    head = make_head().train()
    x = torch.rand(3, 5)
    expected = head[2](torch.relu(head[0](x)))
    torch.testing.assert_close(head(x), expected)
    assert head.output_size == 10
    assert isinstance(head.dropout, nn.Identity)
    assert torch.equal(head.transform(x), x)
    assert set(head.state_dict()) == {
        "_sequential.0.weight",
        "_sequential.0.bias",
        "_sequential.2.weight",
        "_sequential.2.bias",
    }
    assert head.get_config_dict() == {"output_size": 10}


def test_output_size_is_keyword_only():
    with pytest.raises(TypeError):
        SequentialHead(nn.Linear(5, 7))


def test_list_api_matches_nn_sequential():
    head = make_head()
    reference = nn.Sequential(*head)
    extra = nn.Tanh()
    assert head.append(extra) is head
    reference.append(extra)
    assert len(head) == len(reference) == 4
    assert [type(m) for m in head] == [type(m) for m in reference]
    assert head[3] is extra and head[-1] is extra
    assert isinstance(head[1:3], nn.Sequential) and len(head[1:3]) == 2
    sigmoid = nn.Sigmoid()
    head[1] = sigmoid
    assert head[1] is sigmoid
    first_linear = head[1 - 1]
    del head[0]
    del reference[0]
    assert len(head) == len(reference) == 3
    assert all(m is not first_linear for m in head)
    assert "append" in dir(head) and "output_size" in dir(head)


def test_round_trip_keeps_upstream_format(tmp_path):
    head = make_head()
    head.save(str(tmp_path))
    assert json.loads((tmp_path / "config.json").read_text()) == {"output_size": 10}
    pickled = torch.load(tmp_path / "weights.bin", weights_only=False)
    assert isinstance(pickled, nn.Sequential) and len(pickled) == 3
    loaded = SequentialHead.load(str(tmp_path))
    x = torch.rand(4, 5)
    torch.testing.assert_close(loaded(x), head(x))


def test_load_of_upstream_written_file(tmp_path):
    sequential = nn.Sequential(nn.Linear(2, 3))
    torch.save(sequential, tmp_path / "weights.bin")
    (tmp_path / "config.json").write_text(json.dumps({"output_size": 3}))
    loaded = SequentialHead.load(str(tmp_path))
    x = torch.rand(2, 2)
    torch.testing.assert_close(loaded(x), sequential(x))
    with pytest.raises(FileNotFoundError, match="weights.bin"):
        (tmp_path / "weights.bin").unlink()
        SequentialHead.load(str(tmp_path))


def _upstream_servable(root, sequential: nn.Sequential, output_size: int) -> None:
    """A servable as the original quaterion-models wrote it: torch.save of the whole module."""
    (root / "head").mkdir(parents=True)
    (root / "encoders" / "default").mkdir(parents=True)
    torch.save(sequential, root / "head" / "weights.bin")
    (root / "head" / "config.json").write_text(json.dumps({"output_size": output_size}))
    StackEncoder(4).save(str(root / "encoders" / "default"))
    (root / "config.json").write_text(
        json.dumps(
            {
                "encoders": [
                    {
                        "key": "default",
                        "module": "tests.quaterion_models.toy_encoders",
                        "class": "StackEncoder",
                    }
                ],
                "head": {
                    "module": "quaterion_models.heads.sequential_head",
                    "class": "SequentialHead",
                },
            }
        )
    )


def test_upstream_servable_of_standard_layers_loads_without_trust(tmp_path):
    sequential = nn.Sequential(
        nn.Linear(4, 8),
        nn.BatchNorm1d(8),
        nn.GELU(),
        nn.Dropout(0.1),
        nn.Linear(8, 6),
        nn.LayerNorm(6),
        nn.Tanh(),
        nn.Unflatten(1, (1, 6)),
        nn.TransformerEncoderLayer(6, 2, dim_feedforward=8, batch_first=True),
        nn.Flatten(),
    ).eval()
    _upstream_servable(tmp_path, sequential, 6)
    loaded = SimilarityModel.load(str(tmp_path))  # trusted=False by default
    assert isinstance(loaded.head, SequentialHead) and len(loaded.head) == len(sequential)
    x = torch.rand(3, 4)
    with torch.no_grad():
        expected = sequential(x)
    assert expected.shape == (3, 6)
    torch.testing.assert_close(loaded.encode(list(x), to_numpy=False), expected)


def test_custom_layer_needs_trusted(tmp_path):
    sequential = nn.Sequential(nn.Linear(4, 4), ScaleLayer(3.0))
    _upstream_servable(tmp_path, sequential, 4)
    with pytest.raises(UnsafeFileError) as info:
        SimilarityModel.load(str(tmp_path))
    message = str(info.value)
    assert "tests.quaterion_models.toy_encoders.ScaleLayer" in message
    assert "trusted=True" in message and str(tmp_path / "head" / "weights.bin") in message
    with pytest.raises(UnsafeFileError, match="ScaleLayer"):
        SequentialHead.load(str(tmp_path / "head"))
    x = torch.rand(2, 4)
    for loaded_head in (
        SimilarityModel.load(str(tmp_path), trusted=True).head,
        SequentialHead.load(str(tmp_path / "head"), trusted=True),
    ):
        torch.testing.assert_close(loaded_head(x), sequential(x))
    with pytest.raises(UnsafeFileError):  # trust does not leak out of the trusted call
        SimilarityModel.load(str(tmp_path))


def test_legacy_format_file_names_the_format_and_the_opt_in(tmp_path):
    """A head pickled in torch's pre-1.6 (non-zip) format stores module classes that the
    weights-only reader refuses; it was reported as a damaged file to save again."""
    sequential = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    root = tmp_path / "model"
    _upstream_servable(root, sequential, 3)
    weights = root / "head" / "weights.bin"
    torch.save(sequential, weights, _use_new_zipfile_serialization=False)
    with pytest.raises(UnsafeFileError) as info:
        SimilarityModel.load(str(root))
    message = str(info.value)
    for word in ("legacy", str(weights), "trusted=True", "save the model again"):
        assert word in message, (word, message)
    loaded = SimilarityModel.load(str(root), trusted=True)
    x = torch.rand(2, 4)
    with torch.no_grad():
        expected = torch.relu(x @ sequential[0].weight.T + sequential[0].bias)
    torch.testing.assert_close(loaded.encode(list(x), to_numpy=False), expected)
    weights.write_bytes(weights.read_bytes()[:200])  # a truncated copy is damaged, not unsafe
    with pytest.raises(DamagedFileError, match="damaged"):
        SimilarityModel.load(str(root))
