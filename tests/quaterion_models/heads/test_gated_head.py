import pytest
import torch

from quaterion_models import SimilarityModel
from quaterion_models.heads import GatedHead, SkipConnectionHead
from tests.quaterion_models.toy_encoders import StackEncoder


def test_initial_gates_and_keys():
    head = GatedHead(3)
    state = head.state_dict()
    assert list(state) == ["gates"]
    assert torch.equal(state["gates"], torch.full((3,), 2.0))


def test_transform_formula_and_reset():
    head = GatedHead(4)
    with torch.no_grad():
        head.gates.copy_(torch.tensor([0.0, 1.0, -1.0, 5.0]))
    x = torch.rand(6, 4)
    expected = torch.stack([x[:, j] * torch.tanh(head.gates[j]) for j in range(4)], dim=1)
    torch.testing.assert_close(head(x), expected)
    assert head(x)[:, 0].abs().max() == 0  # tanh(0) switches component 0 off
    head.reset_parameters()
    assert torch.equal(head.gates.detach(), torch.full((4,), 2.0))


def test_round_trip(tmp_path):
    head = GatedHead(3)
    with torch.no_grad():
        head.gates.copy_(torch.tensor([0.3, -0.2, 0.9]))
    head.save(str(tmp_path))
    loaded = GatedHead.load(str(tmp_path))
    torch.testing.assert_close(loaded.gates, head.gates)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_input_of_another_dtype_than_the_gates_is_refused_like_the_linear_heads(dtype):
    x = torch.rand(3, 4, dtype=dtype)
    with pytest.raises(RuntimeError, match="same dtype"):  # what every linear head does
        SkipConnectionHead(4)(x)
    with pytest.raises(RuntimeError, match=f"{dtype}.*torch.float32.*same dtype") as raised:
        GatedHead(4)(x)
    assert f".to({dtype})" in str(raised.value)


def test_a_model_with_a_gated_head_names_both_dtypes_like_the_other_heads():
    records = list(torch.rand(2, 4, dtype=torch.float16))
    for head in (GatedHead(4), SkipConnectionHead(4)):
        with pytest.raises(TypeError, match="head .*torch.float16 input.*torch.float32"):
            SimilarityModel(StackEncoder(4), head).encode(records)


def test_matching_dtypes_and_autocast_are_accepted():
    head = GatedHead(4)
    with torch.no_grad():
        head.gates.copy_(torch.tensor([0.5, -1.0, 2.0, 0.0]))
    x = torch.rand(3, 4)
    half = head.to(torch.float16)(x.half())
    expected = torch.stack([x[:, j].half() * torch.tanh(head.gates[j]) for j in range(4)], 1)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half, expected)
    head.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # mixed precision mixes dtypes
        mixed = head(x.bfloat16())
    torch.testing.assert_close(mixed, x.bfloat16().float() * torch.tanh(head.gates))
