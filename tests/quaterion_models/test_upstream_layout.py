"""Servables written by hand in the original quaterion-models layout (spec §6.2: top
``config.json`` with an encoder list, ``head/config.json`` from ``get_config_dict``,
``head/weights.bin`` = ``torch.save(state_dict)``) load here and encode what each head's
formula gives, computed independently from the raw tensors."""

import json

import pytest
import torch

from quaterion_models import SimilarityModel

D = 5
TOY = "tests.quaterion_models.toy_encoders"


def _write_servable(root, encoder: dict, head: dict, head_config: dict, weights) -> None:
    """The files the original's ``SimilarityModel.save`` wrote (indent 2, as it did)."""
    (root / "head").mkdir(parents=True)
    (root / "encoders" / "default").mkdir(parents=True)
    config = {"encoders": [{"key": "default", **encoder}], "head": head}
    (root / "config.json").write_text(json.dumps(config, indent=2))
    (root / "head" / "config.json").write_text(json.dumps(head_config, indent=2))
    torch.save(weights, root / "head" / "weights.bin")


def _gated(g):
    weights = {"gates": g["gates"]}
    return "gated_head", "GatedHead", {"input_embedding_size": D, "dropout": 0.0}, weights


def _stacked(g):
    config = {
        "input_embedding_size": D,
        "dropout": 0.0,
        "output_sizes": [7, 3],
        "activation_fn": "relu",
    }
    weights = {"_stack.0.weight": g["w1"], "_stack.0.bias": g["b1"]}
    weights |= {"_stack.2.weight": g["w2"], "_stack.2.bias": g["b2"]}
    return "stacked_projection_head", "StackedProjectionHead", config, weights


def _widening(g):
    config = {
        "input_embedding_size": D,
        "dropout": 0.0,
        "output_sizes": [10, D],
        "activation_fn": "gelu",
        "expansion_factor": 2.0,
    }
    weights = {"_stack.0.weight": g["wide1"], "_stack.0.bias": g["wideb1"]}
    weights |= {"_stack.2.weight": g["wide2"], "_stack.2.bias": g["wideb2"]}
    return "widening_head", "WideningHead", config, weights


def _skip(g):
    config = {"input_embedding_size": D, "dropout": 0.0, "skip_dropout": 0.0, "n_layers": 2}
    weights = {}
    for i in range(2):
        weights |= {f"gates_{i}": g[f"g{i}"], f"fc_{i}.weight": g[f"f{i}"]}
        weights[f"fc_{i}.bias"] = g[f"fb{i}"]
    return "skip_connection_head", "SkipConnectionHead", config, weights


def _softmax(g):
    config = {
        "output_groups": 2,
        "output_size_per_group": 3,
        "input_embedding_size": D,
        "dropout": 0.0,
    }
    weights = {"projection_layer.weight": g["p"], "projection_layer.bias": g["pb"]}
    return "softmax_head", "SoftmaxEmbeddingsHead", config, weights


def _empty(g):
    return "empty_head", "EmptyHead", {"input_embedding_size": D, "dropout": 0.0}, {}


def _expected(kind: str, g: dict, x: torch.Tensor) -> torch.Tensor:
    """Each head's formula from the spec, on the raw tensors (float64)."""
    x = x.double()
    g = {name: value.double() for name, value in g.items()}
    if kind == "gated":
        return x * torch.tanh(g["gates"])
    if kind == "stacked":
        return torch.relu(x @ g["w1"].T + g["b1"]) @ g["w2"].T + g["b2"]
    if kind == "widening":
        hidden = x @ g["wide1"].T + g["wideb1"]
        hidden = 0.5 * hidden * (1 + torch.erf(hidden / 2**0.5))
        return hidden @ g["wide2"].T + g["wideb2"]
    if kind == "skip":
        for i in range(2):
            x = (x @ g[f"f{i}"].T + g[f"fb{i}"]) * torch.sigmoid(g[f"g{i}"]) + x
        return x
    if kind == "softmax":
        p = (x @ g["p"].T + g["pb"]).view(-1, 2, 3)
        return (p.exp() / p.exp().sum(-1, keepdim=True)).view(-1, 6)
    return x  # empty


HEADS = {
    "gated": _gated,
    "stacked": _stacked,
    "widening": _widening,
    "skip": _skip,
    "softmax": _softmax,
    "empty": _empty,
}


def _tensors() -> dict:
    gen = torch.Generator().manual_seed(11)
    shapes = {
        "gates": (D,),
        "w1": (7, D),
        "b1": (7,),
        "w2": (3, 7),
        "b2": (3,),
        "wide1": (10, D),
        "wideb1": (10,),
        "wide2": (D, 10),
        "wideb2": (D,),
        "g0": (D,),
        "g1": (D,),
        "f0": (D, D),
        "f1": (D, D),
        "fb0": (D,),
        "fb1": (D,),
        "p": (6, D),
        "pb": (6,),
    }
    return {name: torch.randn(*shape, generator=gen) for name, shape in shapes.items()}


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_every_head_in_the_original_layout_loads_and_encodes_its_formula(tmp_path, kind):
    tensors = _tensors()
    module, cls, config, weights = HEADS[kind](tensors)
    encoder = {"module": TOY, "class": "StackEncoder"}
    head = {"module": f"quaterion_models.heads.{module}", "class": cls}
    _write_servable(tmp_path, encoder, head, config, weights)
    (tmp_path / "encoders" / "default" / "config.json").write_text(
        json.dumps({"size": D, "is_trainable": False})
    )
    model = SimilarityModel.load(str(tmp_path))
    assert type(model.head).__name__ == cls
    x = torch.randn(6, D, generator=torch.Generator().manual_seed(12))
    for batch_size in (1, 4, 32):
        encoded = model.encode(list(x), batch_size=batch_size, to_numpy=False)
        torch.testing.assert_close(
            encoded.double(), _expected(kind, tensors, x), rtol=1e-5, atol=1e-6
        )
    assert model.encode([], to_numpy=False).shape == (0, model.head.output_size)


def test_switch_encoder_and_switch_head_in_the_original_layout(tmp_path):
    """SwitchEncoder's own config.json (an encoders *mapping*) and SwitchHead's config with
    per-option classes, as the original wrote them."""
    gates = {"a": torch.tensor([0.3, -1.2, 2.0]), "b": torch.tensor([1.5, 0.2, -0.7])}
    head_config = {
        "heads": {
            key: {
                "config": {"input_embedding_size": 3, "dropout": 0.0},
                "class": {"module": "quaterion_models.heads.gated_head", "class": "GatedHead"},
            }
            for key in ("a", "b")
        },
        "input_embedding_size": 3,
    }
    _write_servable(
        tmp_path,
        {"module": TOY, "class": "ZerosOnesSwitch"},
        {"module": "quaterion_models.heads.switch_head", "class": "SwitchHead"},
        head_config,
        {f"{key}.gates": value for key, value in gates.items()},
    )
    switch = tmp_path / "encoders" / "default"
    options = {key: {"module": TOY, "class": "ConstantEncoder"} for key in ("a", "b")}
    (switch / "config.json").write_text(json.dumps({"encoders": options}, indent=2))
    for key, value in (("a", 0.0), ("b", 1.0)):
        (switch / key).mkdir()
        (switch / key / "config.json").write_text(json.dumps({"value": value, "size": 3}))
    model = SimilarityModel.load(str(tmp_path))
    records = ["zeros", "ones", "zeros", "other", "ones"]
    rows = []
    for record in records:  # a -> zeros through gates a; anything else -> ones through gates b
        key = "a" if record == "zeros" else "b"
        value = torch.full((3,), 0.0 if key == "a" else 1.0)
        rows.append(value * torch.tanh(gates[key]))
    torch.testing.assert_close(model.encode(records, to_numpy=False), torch.stack(rows))
