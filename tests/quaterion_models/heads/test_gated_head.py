import torch

from quaterion_models.heads import GatedHead


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
