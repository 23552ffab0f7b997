import pytest
import torch

from quaterion_models.heads import EncoderHead, SwitchHead


class AddA(EncoderHead):
    @property
    def output_size(self):
        return self.input_embedding_size

    def transform(self, input_vectors):
        return input_vectors + torch.tensor([0.0, 0.0, 1.0])


class AddB(AddA):
    def transform(self, input_vectors):
        return input_vectors + torch.tensor([0.0, 2.0, 0.0])


def make_head():
    return SwitchHead({"a": AddA(3), "b": AddB(3)}, input_embedding_size=3)


ROWS = torch.tensor([[float(i), 0.0, 0.0] for i in range(1, 6)])
META = [{"encoder": key} for key in ["b", "a", "b", "b", "a"]]


def test_routes_rows_and_keeps_order():
    out = make_head()(ROWS, meta=META)
    assert out.shape == (5, 3)
    assert out[:, 0].tolist() == [1, 2, 3, 4, 5]
    assert out[:, 1].tolist() == [2, 0, 2, 2, 0]
    assert out[:, 2].tolist() == [0, 1, 0, 0, 1]


def test_uses_option_transform_not_forward():
    head = SwitchHead({"a": AddA(3, dropout=0.99)}, input_embedding_size=3).train()
    out = head(ROWS, meta=[{"encoder": "a"}] * 5)
    torch.testing.assert_close(out, ROWS + torch.tensor([0.0, 0.0, 1.0]))


def test_errors():
    with pytest.raises(ValueError, match="meta"):
        make_head()(ROWS)
    with pytest.raises(ValueError, match="'c'"):
        make_head()(ROWS, meta=[{"encoder": "c"}] * 5)
    with pytest.raises(TypeError):
        SwitchHead({"a": AddA(3)}, input_embedding_size=3, dropout=0.5)
    with pytest.raises(NotImplementedError):
        make_head().transform(ROWS)


def test_keys_config_and_round_trip(tmp_path):
    from quaterion_models.heads import GatedHead

    head = SwitchHead({"x": GatedHead(3), "y": AddA(3)}, input_embedding_size=3)
    with torch.no_grad():
        head.options["x"].gates.copy_(torch.tensor([0.5, 1.0, 1.5]))
    assert list(head.state_dict()) == ["x.gates"]
    assert head.output_size == 3
    config = head.get_config_dict()
    assert config["input_embedding_size"] == 3
    assert config["heads"]["x"] == {
        "config": {"input_embedding_size": 3, "dropout": 0.0},
        "class": {"module": "quaterion_models.heads.gated_head", "class": "GatedHead"},
    }
    assert config["heads"]["y"]["class"]["class"] == "AddA"
    head.save(str(tmp_path))
    loaded = SwitchHead.load(str(tmp_path))
    meta = [{"encoder": k} for k in ["x", "y", "x", "y", "y"]]
    torch.testing.assert_close(loaded(ROWS, meta=meta), head(ROWS, meta=meta))
    torch.testing.assert_close(loaded.options["x"].gates, head.options["x"].gates)


@pytest.mark.parametrize(
    "meta, words",
    [
        ([{"encoder": "a"}, {}, {"encoder": "a"}], ["row 1", "{}", "'encoder'"]),
        (["a", "b", "a"], ["row 0", "'a'", "'encoder'"]),
        ([{"encoder": "a"}] * 2, ["2 entries", "3 rows"]),
    ],
)
def test_meta_without_an_encoder_per_row_is_named(meta, words):
    with pytest.raises(ValueError) as info:
        make_head()(ROWS[:3], meta=meta)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_options_of_different_output_sizes_are_refused():
    from quaterion_models.heads import SoftmaxEmbeddingsHead

    narrow = SoftmaxEmbeddingsHead(output_groups=1, output_size_per_group=2, input_embedding_size=3)
    with pytest.raises(ValueError, match=r"output_size.*'a': 3.*'b': 2"):
        SwitchHead({"a": AddA(3), "b": narrow}, input_embedding_size=3)
