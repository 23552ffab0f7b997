import torch

from quaterion_models.heads import SkipConnectionHead


def test_keys_and_initial_values():
    head = SkipConnectionHead(4, n_layers=2)
    state = head.state_dict()
    assert set(state) == {
        "gates_0",
        "gates_1",
        "fc_0.weight",
        "fc_0.bias",
        "fc_1.weight",
        "fc_1.bias",
    }
    assert torch.equal(state["gates_0"], torch.full((4,), -4.0))
    assert torch.equal(state["gates_1"], torch.full((4,), -4.0))
    assert state["fc_0.weight"].shape == (4, 4) and state["fc_1.bias"].shape == (4,)


def test_transform_matches_hand_loop():
    head = SkipConnectionHead(3, n_layers=2).eval()
    with torch.no_grad():
        head.gates_0.copy_(torch.tensor([0.0, 1.0, -1.0]))
    x = torch.rand(5, 3, dtype=torch.float64)
    head = head.double()
    rows = []
    for row in x:
        value = row.clone()
        for i in range(2):
            fc, gates = getattr(head, f"fc_{i}"), getattr(head, f"gates_{i}")
            branch = fc.weight @ value + fc.bias
            value = branch * (1 / (1 + torch.exp(-gates))) + value
        rows.append(value)
    torch.testing.assert_close(head(x), torch.stack(rows))


def test_reset_parameters_touches_gates_only():
    head = SkipConnectionHead(3)
    weight = head.fc_0.weight.detach().clone()
    with torch.no_grad():
        head.gates_0.fill_(1.0)
    head.reset_parameters()
    assert torch.equal(head.gates_0.detach(), torch.full((3,), -4.0))
    assert torch.equal(head.fc_0.weight.detach(), weight)


def test_skip_dropout_and_config(tmp_path):
    head = SkipConnectionHead(3, dropout=0.1, skip_dropout=0.2, n_layers=3)
    assert head.skip_dropout.p == 0.2 and head.output_size == 3
    assert head.get_config_dict() == {
        "input_embedding_size": 3,
        "dropout": 0.1,
        "skip_dropout": 0.2,
        "n_layers": 3,
    }
    head.save(str(tmp_path))
    loaded = SkipConnectionHead.load(str(tmp_path)).eval()
    x = torch.rand(2, 3)
    torch.testing.assert_close(loaded(x), head.eval()(x))
