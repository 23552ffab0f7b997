"""ONNX export and OnnxSimilarityModel: parity with torch, head-only exports, bad inputs."""

import collections
import copy
import json
import os
import shutil

import numpy as np
import pytest
import torch

from quaterion_models import SimilarityModel
from quaterion_models.encoders.extras.torchvision_encoder import TorchvisionEncoder
from quaterion_models.heads import EmptyHead, GatedHead, SwitchHead, WideningHead
from quaterion_models.onnx import OnnxSimilarityModel
from quaterion_models.utils import DamagedFileError
from tests.quaterion_models.file_tools import lock_held_by_another_thread
from tests.quaterion_models.tiny_models import TEXTS
from tests.quaterion_models.toy_encoders import StackEncoder


def assert_parity(onnx_vectors: np.ndarray, torch_vectors: np.ndarray) -> None:
    """The issue's bar: cosine >= 0.99999 per row and max abs difference <= 1e-5."""
    assert onnx_vectors.shape == torch_vectors.shape and onnx_vectors.dtype == np.float32
    cosine = (onnx_vectors * torch_vectors).sum(1) / (
        np.linalg.norm(onnx_vectors, axis=1) * np.linalg.norm(torch_vectors, axis=1)
    )
    assert cosine.min() >= 0.99999, cosine
    assert np.abs(onnx_vectors - torch_vectors).max() <= 1e-5


def test_text_export_matches_torch_end_to_end(exported):
    model, path = exported
    onnx_model = OnnxSimilarityModel.load(path)
    assert onnx_model.head_only is False and onnx_model.output_size == 32
    texts = TEXTS * 3
    expected = model.encode(texts)
    for batch_size in (1, 5, 64, np.int64(7)):  # numpy ints too, as SimilarityModel.encode
        assert_parity(onnx_model.encode(texts, batch_size=batch_size), expected)
    for bad in (0, -1, 2.0, True):
        with pytest.raises((TypeError, ValueError), match="batch_size"):
            onnx_model.encode(texts, batch_size=bad)
    with pytest.raises(TypeError, match="to_numpy"):
        onnx_model.encode(texts, to_numpy="False")  # truthy
    assert_parity(onnx_model.encode("a single text"), model.encode("a single text"))
    assert onnx_model.encode("one").shape == (1, 32)
    assert onnx_model.encode([]).shape == (0, 32)
    tensor = onnx_model.encode(TEXTS, to_numpy=False)
    assert isinstance(tensor, torch.Tensor) and tensor.shape == (4, 32)


RECORD_COLLECTIONS = {
    "tuple": tuple,
    "generator": lambda records: (record for record in records),
    "iterator": iter,
    "map": lambda records: map(lambda record: record, records),
    "deque": collections.deque,
}


@pytest.mark.parametrize("kind", sorted(RECORD_COLLECTIONS))
def test_encode_takes_every_collection_of_records_the_torch_servable_takes(exported, kind):
    model, path = exported
    make = RECORD_COLLECTIONS[kind]
    texts = TEXTS * 2
    got = OnnxSimilarityModel.load(path).encode(make(texts), batch_size=3)
    assert got.shape == (len(texts), 32)
    assert_parity(got, model.encode(make(texts), batch_size=3))


def test_head_only_encode_reads_a_tuple_of_rows_like_the_torch_servable(tmp_path):
    head = GatedHead(6)
    with torch.no_grad():
        head.gates.normal_()
    model = SimilarityModel(StackEncoder(6), head)
    model.export_onnx(str(tmp_path / "export"))
    onnx_model = OnnxSimilarityModel.load(tmp_path / "export")
    rows = torch.randn(4, 6)
    expected = model.encode(tuple(rows))  # not one record: its items are the records
    assert expected.shape == (4, 6)
    assert_parity(onnx_model.encode(tuple(rows.numpy())), expected)
    assert_parity(onnx_model.encode(row for row in rows.numpy()), expected)


def test_export_layout_and_config(exported):
    model, path = exported
    assert sorted(p.name for p in path.iterdir()) == [
        "config.json",
        "encoders",
        "head.onnx",
        "model.onnx",
    ]
    assert (path / "encoders" / "default" / "tokenizer.json").is_file()
    config = json.loads((path / "config.json").read_text())
    assert config["end_to_end"] == "model.onnx" and config["head_input_size"] == 32
    from quaterion_models.index import servable_fingerprint

    assert config["fingerprint"] == servable_fingerprint(model)
    assert OnnxSimilarityModel.load(path).fingerprint == servable_fingerprint(model)


def test_head_graph_on_embeddings(exported):
    model, path = exported
    encoder = model.encoders["default"]
    with torch.no_grad():
        embeddings = encoder(encoder.get_collate_fn()(TEXTS))
        expected = model.head(embeddings).numpy()
    head_only = OnnxSimilarityModel.load(path, head_only=True)
    assert head_only.head_only is True
    assert_parity(head_only.encode(list(embeddings.numpy())), expected)
    with pytest.raises(ValueError, match="embeddings of size 32"):
        head_only.encode([np.zeros(31)])


def test_image_export_with_dynamic_image_size(tmp_path):
    torch.manual_seed(0)
    encoder = TorchvisionEncoder("resnet18", image_size=32)
    head = GatedHead(encoder.embedding_size)
    with torch.no_grad():
        head.gates.normal_()
    model = SimilarityModel(encoder, head).eval()
    model.export_onnx(str(tmp_path / "export"))
    onnx_model = OnnxSimilarityModel.load(tmp_path / "export")
    for side in (32, 48):
        images = list(torch.rand(5, 3, side, side))
        expected = model.encode(images)
        assert_parity(
            onnx_model.encode([image.numpy() for image in images], batch_size=2), expected
        )
    with pytest.raises(ValueError, match="shape"):
        onnx_model.encode([np.zeros((1, 32, 32), dtype=np.float32)])


def test_untraceable_encoder_exports_the_head_only(tmp_path):
    head = GatedHead(6)
    with torch.no_grad():
        head.gates.normal_()
    model = SimilarityModel(StackEncoder(6), head)
    config = model.export_onnx(str(tmp_path / "export"))
    assert config["end_to_end"] is None
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["config.json", "head.onnx"]
    onnx_model = OnnxSimilarityModel.load(tmp_path / "export")
    assert onnx_model.head_only is True
    records = list(torch.randn(7, 6))
    assert_parity(onnx_model.encode([r.numpy() for r in records]), model.encode(records))


def test_reexport_replaces_the_previous_export(tmp_path):
    first = SimilarityModel(StackEncoder(4), EmptyHead(4))
    second = SimilarityModel(StackEncoder(6), EmptyHead(6))
    first.export_onnx(str(tmp_path / "export"))
    second.export_onnx(str(tmp_path / "export"))
    assert OnnxSimilarityModel.load(tmp_path / "export").output_size == 6


def test_export_into_a_servable_directory_leaves_the_servable_alone(tmp_path):
    model = SimilarityModel(StackEncoder(4), GatedHead(4))
    records = list(torch.randn(3, 4))
    model.save(str(tmp_path / "model"))
    before = sorted(p.name for p in (tmp_path / "model").iterdir())
    with pytest.raises(FileExistsError, match="not an ONNX export.*config.json"):
        model.export_onnx(str(tmp_path / "model"))
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == before
    loaded = SimilarityModel.load(str(tmp_path / "model"))
    torch.testing.assert_close(
        loaded.encode(records, to_numpy=False), model.encode(records, to_numpy=False)
    )


def test_save_into_an_export_directory_leaves_the_export_alone(tmp_path):
    model = SimilarityModel(StackEncoder(4), GatedHead(4))
    model.export_onnx(str(tmp_path / "export"))
    with pytest.raises(FileExistsError, match="not a saved SimilarityModel.*config.json"):
        model.save(str(tmp_path / "export"))
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["config.json", "head.onnx"]
    records = [row.numpy() for row in torch.randn(3, 4)]
    assert_parity(
        OnnxSimilarityModel.load(tmp_path / "export").encode(records),
        model.encode([torch.from_numpy(row) for row in records]),
    )


def test_head_only_reexport_drops_the_previous_graph_and_keeps_user_files(exported, tmp_path):
    _, path = exported
    target = tmp_path / "export"
    shutil.copytree(path, target)
    (target / "notes.txt").write_text("mine")
    SimilarityModel(StackEncoder(4), EmptyHead(4)).export_onnx(str(target))
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "head.onnx", "notes.txt"]
    assert (target / "notes.txt").read_text() == "mine"


def test_export_interrupted_inside_its_swap_is_recovered_on_load(tmp_path):
    """A crash after the previous export was moved aside and before the new one was renamed
    in leaves only hidden siblings: loading finishes the swap instead of failing."""
    model = SimilarityModel(StackEncoder(4), EmptyHead(4))
    model.export_onnx(str(tmp_path / "export"))
    os.rename(tmp_path / "export", tmp_path / ".export.old-0123")
    loaded = OnnxSimilarityModel.load(tmp_path / "export")
    assert loaded.output_size == 4
    assert (tmp_path / "export" / "config.json").is_file()


def test_loading_an_export_waits_for_a_swap_under_way(tmp_path, monkeypatch):
    """An export being swapped in (exclusive lock on the parent) is not read half old, half
    new: the load waits for the lock, here until the lock timeout."""
    from quaterion_models.utils import directory_swap

    SimilarityModel(StackEncoder(4), EmptyHead(4)).export_onnx(str(tmp_path / "export"))
    monkeypatch.setattr(directory_swap, "LOCK_TIMEOUT_S", 0.3)
    with lock_held_by_another_thread(tmp_path):
        with pytest.raises(TimeoutError, match="another process"):
            OnnxSimilarityModel.load(tmp_path / "export")
    assert OnnxSimilarityModel.load(tmp_path / "export").output_size == 4


def test_runtime_options_are_checked(tmp_path):
    SimilarityModel(StackEncoder(4), EmptyHead(4)).export_onnx(str(tmp_path / "e"))
    one = OnnxSimilarityModel.load(tmp_path / "e", providers="CPUExecutionProvider")
    assert one.session.get_providers() == ["CPUExecutionProvider"]  # not 20 letters
    for providers in (5, [None], [], ["CPUExecutionProvider", 3]):
        with pytest.raises(TypeError, match="providers"):
            OnnxSimilarityModel.load(tmp_path / "e", providers=providers)
    with pytest.raises(TypeError, match="head_only"):
        OnnxSimilarityModel.load(tmp_path / "e", head_only="no")  # truthy: would be head-only
    for options in ("fast", 5):
        with pytest.raises(TypeError, match="session_options.*SessionOptions"):
            OnnxSimilarityModel.load(tmp_path / "e", session_options=options)
    with pytest.warns(UserWarning, match="NoSuchExecutionProvider"):  # onnxruntime's warning
        fallback = OnnxSimilarityModel.load(tmp_path / "e", providers=["NoSuchExecutionProvider"])
    rows = np.eye(4, dtype=np.float32)
    np.testing.assert_array_equal(fallback.encode(list(rows)), rows)  # EmptyHead on the CPU


def test_meta_routed_head_cannot_be_exported(tmp_path):
    head = SwitchHead({"a": EmptyHead(4), "b": EmptyHead(4)}, input_embedding_size=4)
    with pytest.raises(ValueError, match="SwitchHead"):
        SimilarityModel(StackEncoder(4), head).export_onnx(str(tmp_path / "export"))
    assert not (tmp_path / "export").exists()


def test_a_model_without_values_is_not_exported(tmp_path):
    with torch.device("meta"):
        head = WideningHead(4)
    with pytest.raises(
        ValueError, match=r"export_onnx: parameter 'head\..*' is on the meta device"
    ):
        SimilarityModel(StackEncoder(4), head).export_onnx(str(tmp_path / "export"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_a_model_that_is_not_float32_is_refused_with_the_fix(tmp_path, dtype):
    model = SimilarityModel(StackEncoder(4), WideningHead(4)).to(dtype)
    with pytest.raises(TypeError) as info:
        model.export_onnx(str(tmp_path / "export"))
    message = str(info.value)
    for word in ["WideningHead", str(dtype), "float32", "copy.deepcopy(model).float()"]:
        assert word in message, (word, message)
    assert "SwitchHead" not in message and not (tmp_path / "export").exists()
    copy.deepcopy(model).float().export_onnx(str(tmp_path / "export"))  # the fix works
    records = torch.randn(7, 4)
    assert_parity(
        OnnxSimilarityModel.load(tmp_path / "export").encode(list(records.numpy())),
        model.float().encode(list(records)),
    )


def test_an_image_encoder_that_is_not_float32_is_refused_with_the_fix(tmp_path):
    encoder = TorchvisionEncoder("resnet18", image_size=32)
    model = SimilarityModel(encoder, EmptyHead(encoder.embedding_size)).double()
    with pytest.raises(
        TypeError,
        match=r"encoder 'default' \(TorchvisionEncoder\) has "
        r"torch.float64 .*copy.deepcopy\(model\).float\(\)",
    ):
        model.export_onnx(str(tmp_path / "export"))
    assert not (tmp_path / "export").exists()


def test_a_head_misreporting_its_output_size_is_not_exported(tmp_path):
    from torch import nn

    from quaterion_models.heads import SequentialHead

    model = SimilarityModel(StackEncoder(5), SequentialHead(nn.Linear(5, 3), output_size=4))
    with pytest.raises(ValueError, match=r"SequentialHead returned \(2, 3\).*output_size is 4"):
        model.export_onnx(str(tmp_path / "export"))
    assert not (tmp_path / "export").exists()
    with pytest.warns(UserWarning, match="input_embedding_size=100"):  # the original's quirk
        passing = SimilarityModel(StackEncoder(5), EmptyHead(100))  # passes 5-wide rows on
    passing.export_onnx(str(tmp_path / "export"))
    loaded = OnnxSimilarityModel.load(tmp_path / "export")
    assert loaded.output_size == 5 and loaded.encode([]).shape == (0, 5)  # what it returns


def test_bad_model_and_opset(tmp_path):
    from quaterion_models.onnx.export import export_onnx

    with pytest.raises(TypeError, match="SimilarityModel"):
        export_onnx(torch.nn.Linear(2, 2), str(tmp_path))
    with pytest.raises(ValueError, match="opset_version"):
        SimilarityModel(StackEncoder(4), EmptyHead(4)).export_onnx(str(tmp_path), opset_version=7)


def test_torch_servable_is_not_an_export(tmp_path):
    SimilarityModel(StackEncoder(4), EmptyHead(4)).save(str(tmp_path / "servable"))
    with pytest.raises(DamagedFileError, match="'format'.*export_onnx"):
        OnnxSimilarityModel.load(tmp_path / "servable")
    with pytest.raises(FileNotFoundError, match="export_onnx"):
        OnnxSimilarityModel.load(tmp_path / "nothing")
    SimilarityModel(StackEncoder(4), EmptyHead(4)).export_onnx(str(tmp_path / "export"))
    with pytest.raises(DamagedFileError, match="is an ONNX export.*OnnxSimilarityModel.load"):
        SimilarityModel.load(str(tmp_path / "export"))  # and the reverse


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda c: c.update(output_size="32"), "'output_size'"),
        (lambda c: c.update(format="other/9"), "'format'"),
        (lambda c: c["encoders"][0]["preprocessing"].update(max_length=None), "max_length"),
        (lambda c: c["encoders"][0]["preprocessing"].update(type="audio"), "type"),
        (lambda c: c["encoders"][0]["preprocessing"].update(inputs=["pixels"]), "inputs"),
        # sizes and inputs the graph does not have: ONNX Runtime failed at the first encode,
        # or output_size disagreed with the vectors
        (lambda c: c.update(output_size=c["output_size"] + 1), "'output_size' is 33.*width 32"),
        (lambda c: c.update(head_input_size=7, end_to_end=None), "'head_input_size' is 7"),
        (
            lambda c: c["encoders"][0]["preprocessing"].update(inputs=["input_ids"]),
            r"graph takes inputs \[.*attention_mask.*\], the config describes",
        ),
        (lambda c: c.update(end_to_end=c["head"], head="model.onnx"), "the graph takes inputs"),
    ],
)
def test_damaged_export_config_names_the_field(exported, tmp_path, edit, match):
    import shutil

    _, path = exported
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    config = json.loads((copy / "config.json").read_text())
    edit(config)
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(DamagedFileError, match=match):
        OnnxSimilarityModel.load(copy)


def test_non_text_records_are_rejected(exported):
    _, path = exported
    with pytest.raises(TypeError, match="records must be str"):
        OnnxSimilarityModel.load(path).encode([1, 2])
    texts = np.array(["a query", "another text"])  # e.g. df["text"].values: one record
    with pytest.raises(
        TypeError,
        match=r"is one record, not a list of texts: pass model.encode\(array.tolist\(\)\)",
    ):
        OnnxSimilarityModel.load(path).encode(texts)
    with pytest.raises(TypeError) as info:
        OnnxSimilarityModel.load(path).encode([3])
    assert "array" not in str(info.value)  # the hint is for arrays only


def test_export_leaves_every_module_in_eval_mode(tmp_path):
    model = SimilarityModel(StackEncoder(4), GatedHead(4, dropout=0.5)).train()
    model.export_onnx(str(tmp_path / "export"))
    assert not any(module.training for module in model.modules())


def test_a_graph_that_does_not_reproduce_torch_is_not_written(tmp_path, monkeypatch):
    """Simulate an operator traced wrongly: the exporter writes a graph of a different
    computation; the check against torch refuses it and leaves no export behind."""
    real_export = torch.onnx.export

    class Wrong(torch.nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, *inputs):
            return self.module(*inputs) * 1.5

    def mistraced(module, args, f, **kwargs):
        return real_export(Wrong(module).eval(), args, f, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", mistraced)
    model = SimilarityModel(StackEncoder(4), GatedHead(4))
    with pytest.raises(RuntimeError, match="does not reproduce the torch model"):
        model.export_onnx(str(tmp_path / "export"))
    assert not (tmp_path / "export").exists()


@pytest.mark.parametrize("name", ["model.onnx", "encoders/default/tokenizer.json"])
def test_truncated_export_files_are_damaged_files(exported, tmp_path, name):
    import shutil

    _, path = exported
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    data = (copy / name).read_bytes()
    (copy / name).write_bytes(data[: len(data) // 3])
    with pytest.raises(DamagedFileError, match=name.rsplit("/", 1)[-1]):
        OnnxSimilarityModel.load(copy)


def test_two_encoders_concatenate_in_key_order(exported, tmp_path):
    from quaterion_models.encoders.extras.transformer_encoder import TransformerEncoder

    model, _ = exported
    source = model.encoders["default"]
    bert_dir = tmp_path / "bert"
    source.save(str(bert_dir))
    encoders = {
        "b": TransformerEncoder(str(bert_dir), pooling="cls", max_length=16),
        "a": TransformerEncoder(str(bert_dir), pooling="mean", max_length=32),
    }
    two = SimilarityModel(encoders, EmptyHead(64)).eval()
    config = two.export_onnx(str(tmp_path / "export"))
    assert [entry["key"] for entry in config["encoders"]] == ["a", "b"]
    onnx_model = OnnxSimilarityModel.load(tmp_path / "export")
    expected = two.encode(TEXTS)
    assert_parity(onnx_model.encode(TEXTS, batch_size=3), expected)
    with torch.no_grad():  # columns: "a" (mean pooling) first, then "b" (CLS)
        first = encoders["a"](encoders["a"].get_collate_fn()(TEXTS)).numpy()
    np.testing.assert_allclose(expected[:, :32], first, atol=1e-6, rtol=0)
