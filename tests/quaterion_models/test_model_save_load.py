"""SimilarityModel.save / load: round trips, the on-disk format, safety, errors, atomicity."""

import json
import os
import pickle
import sys

import pytest
import torch
from torch import nn

from quaterion_models import SimilarityModel
from quaterion_models.utils import is_loading_trusted, trusted_loading
from quaterion_models.utils.errors import DamagedFileError
from quaterion_models.heads import (
    EmptyHead,
    GatedHead,
    SequentialHead,
    SkipConnectionHead,
    SoftmaxEmbeddingsHead,
    WideningHead,
)
from tests.quaterion_models.file_tools import retag_storages, write_malicious_state_dict
from tests.quaterion_models.toy_encoders import (
    FailingSaveEncoder,
    LinearEncoder,
    NotPersistableEncoder,
    StackEncoder,
    TrustRecordingEncoder,
)

HEADS = {
    "sequential": lambda: SequentialHead(
        nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 10), output_size=10
    ),
    "gated": lambda: GatedHead(5),
    "widening": lambda: WideningHead(5),
    "skip": lambda: SkipConnectionHead(5),
    "empty": lambda: EmptyHead(5),
    "softmax": lambda: SoftmaxEmbeddingsHead(
        output_groups=2, output_size_per_group=10, input_embedding_size=5
    ),
}


@pytest.mark.parametrize("name", sorted(HEADS))
def test_head_shapes_and_round_trip(name, tmp_path):
    head = HEADS[name]()
    assert head.forward(torch.rand(3, 5)).shape == (3, head.output_size)
    model = SimilarityModel(encoders=StackEncoder(5), head=head)
    x = torch.rand(3, 5)
    before = model.encode(x, to_numpy=False)
    model.save(str(tmp_path / "model"))
    assert (tmp_path / "model" / "config.json").is_file()
    loaded = SimilarityModel.load(str(tmp_path / "model"))
    assert list(loaded.encoders) == ["default"]
    assert type(loaded.encoders["default"]) is StackEncoder and type(loaded.head) is type(head)
    torch.testing.assert_close(loaded.encode(x, to_numpy=False), before)


CONFIGURED_HEADS = {
    "skip": lambda: SkipConnectionHead(5, dropout=0.1, skip_dropout=0.2, n_layers=3),
    "widening": lambda: WideningHead(5, expansion_factor=2.5, activation_fn="gelu", dropout=0.3),
    "softmax": lambda: SoftmaxEmbeddingsHead(3, 4, 5, dropout=0.2),
    "gated": lambda: GatedHead(5, dropout=0.5),
    "sequential": lambda: SequentialHead(
        nn.Linear(5, 4), nn.GELU(), nn.LayerNorm(4), nn.Dropout(0.3), output_size=4
    ),
}


@pytest.mark.parametrize("name", sorted(CONFIGURED_HEADS))
def test_non_default_head_configs_and_weights_round_trip(name, tmp_path):
    torch.manual_seed(0)
    head = CONFIGURED_HEADS[name]()
    with torch.no_grad():
        for parameter in head.parameters():
            parameter.normal_()  # every weight matters, not just the initial ones
    model = SimilarityModel(encoders=StackEncoder(5), head=head)
    records = list(torch.rand(4, 5))
    with torch.no_grad():  # dropout is off in encode (eval mode): the bare layers' result
        expected = head.eval()(torch.stack(records))
    model.save(str(tmp_path / "model"))
    loaded = SimilarityModel.load(str(tmp_path / "model"))
    assert loaded.head.get_config_dict() == head.get_config_dict()
    torch.testing.assert_close(loaded.encode(records, to_numpy=False), expected)
    torch.testing.assert_close(loaded.encode(records, to_numpy=False), expected)  # no dropout


def test_config_layout_and_dict_of_encoders(tmp_path):
    encoders = {"text": LinearEncoder(5, 3, is_trainable=False), "img": LinearEncoder(5, 2)}
    model = SimilarityModel(encoders=encoders, head=GatedHead(5))
    model.save(str(tmp_path))
    config = json.loads((tmp_path / "config.json").read_text())
    assert config == {
        "encoders": [
            {
                "key": "text",
                "module": "tests.quaterion_models.toy_encoders",
                "class": "LinearEncoder",
            },
            {
                "key": "img",
                "module": "tests.quaterion_models.toy_encoders",
                "class": "LinearEncoder",
            },
        ],
        "head": {"module": "quaterion_models.heads.gated_head", "class": "GatedHead"},
    }
    assert sorted(os.listdir(tmp_path)) == ["config.json", "encoders", "head"]
    assert sorted(os.listdir(tmp_path / "encoders")) == ["img", "text"]
    assert json.loads((tmp_path / "head" / "config.json").read_text()) == {
        "input_embedding_size": 5,
        "dropout": 0.0,
    }
    loaded = SimilarityModel.load(str(tmp_path))
    assert list(loaded.encoders) == ["text", "img"]
    assert not any(p.requires_grad for p in loaded.encoders["text"].parameters())
    batch = {"data": {"text": torch.rand(2, 5), "img": torch.rand(2, 5)}, "meta": None}
    torch.testing.assert_close(loaded(batch), model(batch))


def test_load_hand_built_directory(tmp_path):
    """The documented layout, written without SimilarityModel.save, loads."""
    (tmp_path / "head").mkdir()
    (tmp_path / "encoders" / "left").mkdir(parents=True)
    (tmp_path / "encoders" / "right").mkdir(parents=True)
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "encoders": [
                    {
                        "key": "right",
                        "module": "tests.quaterion_models.toy_encoders",
                        "class": "StackEncoder",
                    },
                    {
                        "key": "left",
                        "module": "tests.quaterion_models.toy_encoders",
                        "class": "StackEncoder",
                    },
                ],
                "head": {"module": "quaterion_models.heads.gated_head", "class": "GatedHead"},
            }
        )
    )
    (tmp_path / "head" / "config.json").write_text(json.dumps({"input_embedding_size": 5}))
    gates = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0])
    torch.save({"gates": gates}, tmp_path / "head" / "weights.bin")
    StackEncoder(2).save(str(tmp_path / "encoders" / "left"))
    StackEncoder(3, is_trainable=True).save(str(tmp_path / "encoders" / "right"))

    model = SimilarityModel.load(str(tmp_path))
    assert list(model.encoders) == ["right", "left"]
    assert model.encoders["right"].embedding_size == 3 and model.encoders["right"].trainable
    left, right = torch.rand(4, 2), torch.rand(4, 3)
    out = model({"data": {"left": left, "right": right}, "meta": None})
    expected = torch.cat([left, right], dim=1) * torch.tanh(gates)  # "left" < "right"
    torch.testing.assert_close(out, expected)


def test_head_saved_on_gpu_loads_on_cpu(tmp_path):
    model = SimilarityModel(encoders=StackEncoder(5), head=WideningHead(5))
    x = torch.rand(3, 5)
    before = model.encode(x, to_numpy=False)
    model.save(str(tmp_path))
    retag_storages(tmp_path / "head" / "weights.bin", "cuda:0")
    loaded = SimilarityModel.load(str(tmp_path))
    assert all(p.device.type == "cpu" for p in loaded.parameters())
    torch.testing.assert_close(loaded.encode(x, to_numpy=False), before)


def test_malicious_head_weights_refused(tmp_path):
    SimilarityModel(encoders=StackEncoder(5), head=GatedHead(5)).save(str(tmp_path / "m"))
    weights = tmp_path / "m" / "head" / "weights.bin"
    marker = tmp_path / "marker"
    write_malicious_state_dict(weights, marker, {"gates": torch.ones(5)})
    with pytest.raises(pickle.UnpicklingError) as info:
        SimilarityModel.load(str(tmp_path / "m"))
    assert str(weights) in str(info.value) and "not a plain state dict" in str(info.value)
    assert not marker.exists()


PAYLOAD = """
import pathlib
pathlib.Path({marker!r}).write_text("pwned")
from quaterion_models.heads import GatedHead as Planted
from tests.quaterion_models.toy_encoders import StackEncoder as PlantedEncoder
"""


@pytest.mark.parametrize(
    "field, module, planted",
    [  # {root}: the servable's directory name; its parent and itself are put on sys.path
        ("head", "{root}.head.payload", "head/payload.py"),
        ("head", "payload_{root}", "payload_{root}.py"),
        ("encoder", "{root}.encoders.default.payload", "encoders/default/payload.py"),
    ],
)
def test_config_naming_a_module_inside_the_servable_runs_none_of_its_code(
    tmp_path, monkeypatch, field, module, planted
):
    """Running ``python -c "SimilarityModel.load('servable')"`` next to a downloaded servable
    puts its parent on sys.path: a config must not make load import code shipped inside it."""
    name = f"servable_{tmp_path.name}"  # a fresh module name per test: nothing cached
    root = tmp_path / name
    module, planted = module.format(root=name), root / planted.format(root=name)
    SimilarityModel(encoders=StackEncoder(5), head=GatedHead(5)).save(str(root))
    planted.write_text(PAYLOAD.format(marker=str(tmp_path / "marker")))
    config = json.loads((root / "config.json").read_text())
    if field == "head":
        config["head"] = {"module": module, "class": "Planted"}
    else:
        config["encoders"][0].update({"module": module, "class": "PlantedEncoder"})
    (root / "config.json").write_text(json.dumps(config))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(root))
    with pytest.raises(pickle.UnpicklingError) as info:  # UnsafeFileError
        SimilarityModel.load(str(root))
    for word in [module, str(root), "trusted=True"]:
        assert word in str(info.value), (word, str(info.value))
    assert not (tmp_path / "marker").exists() and module not in sys.modules
    SimilarityModel.load(str(root), trusted=True)  # the caller asks: the code runs
    assert (tmp_path / "marker").read_text() == "pwned"


def test_installed_packages_inside_the_servable_directory_still_import(tmp_path, monkeypatch):
    """A project folder saved as the servable may hold its own virtualenv: code in its
    site-packages is installed code, imported as usual."""
    from quaterion_models.utils import import_origin

    name = f"pkg_{tmp_path.name}"
    site_packages = tmp_path / ".venv" / "site-packages"
    (site_packages / name).mkdir(parents=True)
    (site_packages / name / "__init__.py").write_text(
        "from quaterion_models.heads import GatedHead\n\n\nclass Installed(GatedHead):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(site_packages))
    model = SimilarityModel(encoders=StackEncoder(5), head=__import__(name).Installed(5))
    model.save(str(tmp_path))
    del sys.modules[name]  # as in a fresh process
    with pytest.raises(pickle.UnpicklingError, match=name):  # not known as installed
        SimilarityModel.load(str(tmp_path))
    assert name not in sys.modules
    monkeypatch.setattr(import_origin, "installed_code_dirs", lambda: (str(site_packages),))
    assert type(SimilarityModel.load(str(tmp_path)).head).__name__ == "Installed"


def test_not_a_saved_model(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "missing")):
        SimilarityModel.load(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        SimilarityModel.load(str(tmp_path / "empty"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"hidden_size": 3}))
    with pytest.raises(ValueError, match="'encoders' and 'head'"):
        SimilarityModel.load(str(tmp_path / "other"))
    SimilarityModel(encoders=StackEncoder(5), head=EmptyHead(5)).save(str(tmp_path / "m"))
    for entry in (tmp_path / "m" / "encoders" / "default").iterdir():
        entry.unlink()
    (tmp_path / "m" / "encoders" / "default").rmdir()
    with pytest.raises(FileNotFoundError, match="encoders"):
        SimilarityModel.load(str(tmp_path / "m"))


def test_config_naming_a_non_head_class_is_refused(tmp_path):
    SimilarityModel(encoders=StackEncoder(5), head=EmptyHead(5)).save(str(tmp_path))
    config = json.loads((tmp_path / "config.json").read_text())
    config["head"] = {"module": "torch.nn", "class": "Linear"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(TypeError, match="not a EncoderHead subclass"):
        SimilarityModel.load(str(tmp_path))


def test_encoder_without_save_names_class_and_method(tmp_path):
    model = SimilarityModel(encoders={"txt": NotPersistableEncoder()}, head=EmptyHead(5))
    with pytest.raises(NotImplementedError) as info:
        model.save(str(tmp_path / "m"))
    assert "NotPersistableEncoder.save is not implemented: implement save()/load()" in str(
        info.value
    )
    assert "'txt'" in "".join(getattr(info.value, "__notes__", []))
    assert not (tmp_path / "m").exists()
    assert os.listdir(tmp_path) == []  # no temp directory left behind


class TensorConfigHead(GatedHead):
    """A head whose config holds a value JSON cannot write."""

    def get_config_dict(self) -> dict:
        return {**super().get_config_dict(), "scale": torch.tensor(1.0)}


def test_head_that_cannot_be_saved_is_named(tmp_path):
    model = SimilarityModel(encoders=StackEncoder(5), head=TensorConfigHead(5))
    with pytest.raises(TypeError, match="Tensor is not JSON serializable") as info:
        model.save(str(tmp_path / "m"))
    notes = "".join(getattr(info.value, "__notes__", []))
    assert "head TensorConfigHead" in notes and str(tmp_path / "m") in notes
    assert os.listdir(tmp_path) == []


def test_main_class_cannot_be_restored_clear_error(tmp_path, caplog):
    script_cls = type("ScriptEncoder", (StackEncoder,), {"__module__": "__main__"})
    SimilarityModel(encoders=script_cls(5), head=EmptyHead(5)).save(str(tmp_path))
    assert "__main__" in caplog.text
    with pytest.raises(ImportError, match="importable module"):
        SimilarityModel.load(str(tmp_path))


def test_save_twice_into_same_directory(tmp_path):
    target = tmp_path / "m"
    model = SimilarityModel(encoders=LinearEncoder(5, 4), head=GatedHead(4))
    model.save(str(target))
    (target / "README.txt").write_text("notes")  # the user's own file survives re-saves
    with torch.no_grad():
        model.head.gates.fill_(0.25)
    model.save(str(target))
    loaded = SimilarityModel.load(str(target))
    assert torch.equal(loaded.head.gates.detach(), torch.full((4,), 0.25))
    assert (target / "README.txt").read_text() == "notes"
    assert sorted(os.listdir(tmp_path)) == ["m"]


def test_failed_save_keeps_previous_model(tmp_path):
    target = tmp_path / "m"
    v1 = SimilarityModel(
        encoders={"a": StackEncoder(2), "b": LinearEncoder(5, 3)}, head=GatedHead(5)
    )
    v1.save(str(target))
    snapshot = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}

    v2 = SimilarityModel(
        encoders={"a": FailingSaveEncoder(2), "b": LinearEncoder(5, 3)}, head=WideningHead(5)
    )
    with pytest.raises(OSError, match="simulated"):
        v2.save(str(target))

    after = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert after == snapshot  # byte for byte the v1 save
    assert sorted(os.listdir(tmp_path)) == ["m"]  # temp directory cleaned up
    loaded = SimilarityModel.load(str(target))
    assert type(loaded.head) is GatedHead and type(loaded.encoders["a"]) is StackEncoder
    batch = {"data": {"a": torch.rand(2, 2), "b": torch.rand(2, 5)}, "meta": None}
    torch.testing.assert_close(loaded(batch), v1(batch))


def test_save_into_a_file_path_is_an_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="not a directory"):
        SimilarityModel(encoders=StackEncoder(5), head=EmptyHead(5)).save(str(tmp_path / "file"))
    for below in ("file/sub", "file/sub/deeper"):  # a file on the way to the target
        with pytest.raises(NotADirectoryError) as info:
            SimilarityModel(encoders=StackEncoder(5), head=EmptyHead(5)).save(str(tmp_path / below))
        assert f"{tmp_path / 'file'} is a file" in str(info.value)
    assert sorted(os.listdir(tmp_path)) == ["file"]


def test_config_with_path_traversal_key_is_refused(tmp_path):
    SimilarityModel(encoders=StackEncoder(5), head=EmptyHead(5)).save(str(tmp_path / "m"))
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["encoders"][0]["key"] = "../../elsewhere"
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="invalid encoder key"):
        SimilarityModel.load(str(tmp_path / "m"))


def test_trusted_flag_reaches_custom_encoders_and_ends_with_the_call(tmp_path):
    model = SimilarityModel(encoders=TrustRecordingEncoder(5), head=EmptyHead(5))
    model.save(str(tmp_path))
    TrustRecordingEncoder.seen.clear()
    SimilarityModel.load(str(tmp_path))
    SimilarityModel.load(str(tmp_path), trusted=True)
    SimilarityModel.load(str(tmp_path))
    assert TrustRecordingEncoder.seen == [False, True, False]
    assert not is_loading_trusted()
    with trusted_loading():
        assert is_loading_trusted() and not is_loading_trusted(False)
        SimilarityModel.load(str(tmp_path))  # an explicit trusted=False wins inside a block
    assert TrustRecordingEncoder.seen[-1] is False


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_a_model_saved_in_another_dtype_loads_and_encodes_on_cpu(tmp_path, dtype):
    # e.g. trained in half precision on a GPU: its head loads into float32 parameters
    model = SimilarityModel(encoders=StackEncoder(5), head=WideningHead(5)).to(dtype)
    x = torch.rand(3, 5)
    expected = model.encode(x.to(dtype), to_numpy=False).float()
    model.save(str(tmp_path))
    loaded = SimilarityModel.load(str(tmp_path))
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    for name, value in model.head.state_dict().items():  # the saved values, cast exactly
        torch.testing.assert_close(loaded.head.state_dict()[name], value.float())
    tolerance = {torch.float16: 2e-3, torch.bfloat16: 2e-2, torch.float64: 1e-6}[dtype]
    result = loaded.encode(x, to_numpy=False)
    torch.testing.assert_close(result, expected, atol=tolerance, rtol=tolerance)


def _meta_model() -> SimilarityModel:
    with torch.device("meta"):
        head = WideningHead(5)
    return SimilarityModel(encoders=StackEncoder(5), head=head)


def test_a_model_without_values_is_not_saved(tmp_path):
    target = tmp_path / "servable"
    with pytest.raises(
        ValueError, match=r"SimilarityModel.save: parameter 'head\..*' is on the meta"
    ):
        _meta_model().save(str(target))
    assert list(tmp_path.iterdir()) == []  # nothing written, no temp directory left


def test_weights_saved_from_the_meta_device_are_a_damaged_file(tmp_path):
    model = SimilarityModel(encoders=StackEncoder(5), head=WideningHead(5))
    model.save(str(tmp_path))
    state = _meta_model().head.state_dict()
    torch.save(state, tmp_path / "head" / "weights.bin")  # e.g. written by another tool
    with pytest.raises(
        DamagedFileError, match=r"holds no weights: tensor '.*' was saved from the meta"
    ):
        SimilarityModel.load(str(tmp_path))
