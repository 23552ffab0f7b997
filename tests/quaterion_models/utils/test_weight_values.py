"""Hand-edited head weights: NaN/inf are refused unless trusted, complex ones always."""

import os

import pytest
import torch
from torch import nn

from quaterion_models import SimilarityModel
from quaterion_models.heads import GatedHead, SequentialHead, SkipConnectionHead
from quaterion_models.utils import DamagedFileError, trusted_loading
from tests.quaterion_models.toy_encoders import StackEncoder


def _saved_model(tmp_path, head) -> str:
    path = str(tmp_path / "model")
    SimilarityModel(encoders=StackEncoder(4), head=head).save(path)
    return path


def _edit_head_weights(path: str, edit) -> str:
    weights = os.path.join(path, "head", "weights.bin")
    state = torch.load(weights, weights_only=False)
    torch.save(edit(state), weights)
    return weights


def _with_value(name: str, position: tuple, value: float):
    def edit(state):
        state = dict(state)
        state[name] = state[name].clone()
        state[name][position] = value
        return state

    return edit


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_head_weight_is_refused_naming_the_tensor(tmp_path, value):
    path = _saved_model(tmp_path, SkipConnectionHead(4))
    weights = _edit_head_weights(path, _with_value("fc_0.weight", (1, 2), value))
    with pytest.raises(DamagedFileError) as info:
        SimilarityModel.load(path)
    message = str(info.value)
    assert weights in message and "'fc_0.weight'" in message
    assert "1 NaN or inf values of 16" in message and "trusted=True" in message


def test_trusted_loads_non_finite_weights_as_they_are(tmp_path):
    path = _saved_model(tmp_path, SkipConnectionHead(4))
    _edit_head_weights(path, _with_value("fc_0.weight", (0, 0), float("nan")))
    model = SimilarityModel.load(path, trusted=True)
    assert torch.isnan(model.head.fc_0.weight[0, 0])
    x = torch.ones(2, 4)
    out = model.encode(list(x), to_numpy=False)
    # computed by hand: fc_0(x) * sigmoid(gates_0) + x; W[0, 0] is NaN, so column 0 is NaN
    assert torch.isnan(out[:, 0]).all() and torch.isfinite(out[:, 1:]).all()
    with trusted_loading():  # the head's own load reads the context
        assert torch.isnan(type(model.head).load(os.path.join(path, "head")).fc_0.weight[0, 0])
    with pytest.raises(DamagedFileError, match="non-finite"):  # trust ends with the call
        SimilarityModel.load(path)


def test_finite_weights_load_unchanged(tmp_path):
    head = GatedHead(4)
    path = _saved_model(tmp_path, head)
    loaded = SimilarityModel.load(path).head
    for name, value in head.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value, rtol=0, atol=0)


def test_complex_weights_are_refused_even_when_trusted(tmp_path):
    path = _saved_model(tmp_path, GatedHead(4))

    def to_complex(state):
        return {**state, "gates": state["gates"].to(torch.complex64) * (1 + 1j)}

    weights = _edit_head_weights(path, to_complex)
    for trusted in (False, True):
        with pytest.raises(DamagedFileError) as info:
            SimilarityModel.load(path, trusted=trusted)
        message = str(info.value)
        assert weights in message and "'gates'" in message and "complex64" in message


def _sequential_model(tmp_path, edit) -> str:
    sequential = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    edit(sequential)
    path = _saved_model(tmp_path, SequentialHead(*sequential, output_size=3))
    return path


@pytest.mark.filterwarnings("ignore:SimilarityModel.save")  # tested below
def test_sequential_head_with_inf_weight_is_refused(tmp_path):
    def poison(sequential):
        with torch.no_grad():
            sequential[0].bias[2] = float("inf")

    path = _sequential_model(tmp_path, poison)
    with pytest.raises(DamagedFileError, match="tensor '0.bias' has 1 NaN or inf values of 3"):
        SimilarityModel.load(path)
    with pytest.raises(DamagedFileError, match="'0.bias'"):
        SequentialHead.load(os.path.join(path, "head"))
    head = SequentialHead.load(os.path.join(path, "head"), trusted=True)
    assert torch.isinf(head[0].bias[2])


@pytest.mark.filterwarnings("ignore:Complex modules")
def test_sequential_head_with_complex_weight_is_refused(tmp_path):
    def to_complex(sequential):
        sequential[0].to(torch.complex64)

    path = _sequential_model(tmp_path, to_complex)
    with pytest.raises(DamagedFileError, match="'0.weight' is torch.complex64"):
        SequentialHead.load(os.path.join(path, "head"), trusted=True)


def test_saving_non_finite_head_weights_warns_and_the_load_refuses(tmp_path):
    head = SkipConnectionHead(4)
    with torch.no_grad():
        head.fc_0.bias[3] = float("nan")
    model = SimilarityModel(encoders=StackEncoder(4), head=head)
    path = str(tmp_path / "diverged")
    with pytest.warns(UserWarning, match="tensor 'fc_0.bias' has 1 NaN or inf values of 4"):
        model.save(path)
    with pytest.raises(DamagedFileError, match="'fc_0.bias'"):
        SimilarityModel.load(path)
