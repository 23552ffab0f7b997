"""One table of bad inputs for quaterion_models: each row asserts the exception type and the
key words of its message. Valid edge inputs close to each boundary are checked to work."""

import json
import math
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from torch import nn

from quaterion_models import SimilarityModel
from quaterion_models.encoders import SwitchEncoder
from quaterion_models.heads import (
    EmptyHead,
    GatedHead,
    SequentialHead,
    SkipConnectionHead,
    SoftmaxEmbeddingsHead,
    StackedProjectionHead,
    SwitchHead,
    WideningHead,
)
from quaterion_models.utils import DamagedFileError, UnsafeFileError
from tests.quaterion_models.file_tools import MarkerPayload, write_malicious_state_dict
from tests.quaterion_models.toy_encoders import (
    FirstRowsEncoder,
    LinearEncoder,
    MisreportingEncoder,
    StackEncoder,
)

# (id, callable, exception type, words that must all appear in the message)
CONSTRUCTION = [
    (
        "negative-dropout",
        lambda: GatedHead(4, dropout=-0.1),
        ValueError,
        ["dropout", "-0.1", "[0, 1)"],
    ),
    ("dropout-one", lambda: EmptyHead(4, dropout=1.0), ValueError, ["dropout", "1.0", "[0, 1)"]),
    ("dropout-nan", lambda: EmptyHead(4, dropout=math.nan), ValueError, ["dropout", "nan"]),
    ("dropout-str", lambda: EmptyHead(4, dropout="0.1"), TypeError, ["dropout", "str", "0.1"]),
    (
        "skip-dropout",
        lambda: SkipConnectionHead(4, skip_dropout=1.5),
        ValueError,
        ["skip_dropout", "1.5"],
    ),
    (
        "skip-zero-layers",
        lambda: SkipConnectionHead(4, n_layers=0),
        ValueError,
        ["n_layers", "0", "EmptyHead"],
    ),
    (
        "zero-width",
        lambda: EmptyHead(0),
        ValueError,
        ["input_embedding_size", "0", "get_encoders_output_size"],
    ),
    ("float-width", lambda: GatedHead(4.5), TypeError, ["input_embedding_size", "float", "4.5"]),
    ("bool-width", lambda: GatedHead(True), TypeError, ["input_embedding_size", "bool"]),
    (
        "softmax-zero-groups",
        lambda: SoftmaxEmbeddingsHead(
            output_groups=0, output_size_per_group=3, input_embedding_size=4
        ),
        ValueError,
        ["SoftmaxEmbeddingsHead", "output_groups", "0", "at least one"],
    ),
    (
        "softmax-negative-group-size",
        lambda: SoftmaxEmbeddingsHead(
            output_groups=2, output_size_per_group=-3, input_embedding_size=4
        ),
        ValueError,
        ["output_size_per_group", "-3"],
    ),
    (
        "stacked-empty",
        lambda: StackedProjectionHead(4, output_sizes=[]),
        ValueError,
        ["output_sizes", "at least one"],
    ),
    (
        "stacked-zero-layer",
        lambda: StackedProjectionHead(4, output_sizes=[8, 0]),
        ValueError,
        ["output_sizes[1]", "0"],
    ),
    (
        "stacked-int-sizes",
        lambda: StackedProjectionHead(4, output_sizes=8),
        TypeError,
        ["output_sizes", "list"],
    ),
    (
        "stacked-bad-activation",
        lambda: StackedProjectionHead(4, [8, 2], activation_fn="relux"),
        ValueError,
        ["activation_fn", "relux"],
    ),
    (
        "widening-negative-factor",
        lambda: WideningHead(4, expansion_factor=-1.0),
        ValueError,
        ["expansion_factor", "-1.0"],
    ),
    (
        "widening-empty-hidden",
        lambda: WideningHead(4, expansion_factor=0.1),
        ValueError,
        ["expansion_factor", "at least one unit"],
    ),
    (
        "sequential-zero-output",
        lambda: SequentialHead(nn.Linear(4, 2), output_size=0),
        ValueError,
        ["output_size", "0"],
    ),
    (
        "sequential-non-module",
        lambda: SequentialHead(torch.relu, output_size=2),
        TypeError,
        ["Module"],
    ),
    (
        "switch-head-empty",
        lambda: SwitchHead({}, input_embedding_size=4),
        ValueError,
        ["options", "non-empty"],
    ),
    (
        "switch-head-not-a-head",
        lambda: SwitchHead({"a": nn.Linear(4, 4)}, 4),
        TypeError,
        ["'a'", "EncoderHead", "Linear"],
    ),
    ("switch-encoder-empty", lambda: SwitchEncoder({}), ValueError, ["options", "non-empty"]),
    (
        "switch-encoder-not-encoder",
        lambda: SwitchEncoder({"a": nn.Linear(2, 2)}),
        TypeError,
        ["'a'", "Encoder", "Linear"],
    ),
]


def test_boundary_head_arguments_are_valid():
    """Values at the edge of each range still build heads that compute the right thing."""
    x = torch.rand(1, 4)  # a batch of one
    head = GatedHead(4, dropout=0.0)
    torch.testing.assert_close(head(x), x * math.tanh(2.0))
    assert isinstance(EmptyHead(1, dropout=0.999).dropout, nn.Dropout)
    softmax = SoftmaxEmbeddingsHead(
        output_groups=1, output_size_per_group=1, input_embedding_size=4
    )
    assert torch.equal(softmax(x), torch.ones(1, 1))  # one group of one: softmax is 1
    widening = WideningHead(4, expansion_factor=0.25)  # hidden width exactly 1
    assert widening(x).shape == (1, 4) and widening.get_config_dict()["output_sizes"] == [1, 4]
    skip = SkipConnectionHead(4, n_layers=1, skip_dropout=0.0)
    expected = skip.fc_0(x) * torch.sigmoid(torch.tensor(-4.0)) + x
    torch.testing.assert_close(skip(x), expected)


# ----------------------------------------------------------------------------------------------
# Loading damaged, edited or unsafe directories. Each row damages a freshly saved model
# (StackEncoder(4) + GatedHead(4)) and names the file that the message must mention.


def _at(relative: str, action: Callable[[Path], Any]) -> Callable[[Path], str]:
    """A damage: ``action`` on ``root / relative``; the error message must name that path."""

    def damage(root: Path) -> str:
        action(root / relative)
        return relative

    return damage


def _halve(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _truncate(relative: str):
    return _at(relative, _halve)


def _write(relative: str, data: bytes):
    return _at(relative, lambda path: path.write_bytes(data))


def _torch_save(relative: str, obj: Any):
    return _at(relative, lambda path: torch.save(obj, path))


def _remove(relative: str):
    return _at(relative, lambda path: shutil.rmtree(path) if path.is_dir() else path.unlink())


def _edit_config(**changes):
    def damage(root: Path) -> str:
        config = json.loads((root / "config.json").read_text())
        config.update(changes)
        (root / "config.json").write_text(json.dumps(config))
        return "config.json"

    return damage


def _record(module: Any, name: str = "GatedHead") -> dict:
    return {"module": module, "class": name}


def _encoder_record(key: Any) -> dict:
    return {"key": key, "module": "tests.quaterion_models.toy_encoders", "class": "StackEncoder"}


def _malicious_gated_weights(root: Path) -> str:
    write_malicious_state_dict(
        root / "head" / "weights.bin", root / "marker", {"gates": torch.ones(4)}
    )
    return "head/weights.bin"


def _edit_config_to_sequential_head(root: Path) -> str:
    """The attack from the issue: name SequentialHead so that weights.bin gets unpickled."""
    _edit_config(
        head={"module": "quaterion_models.heads.sequential_head", "class": "SequentialHead"}
    )(root)
    (root / "head" / "config.json").write_text(json.dumps({"output_size": 4}))
    sequential = nn.Sequential(nn.Linear(4, 4))
    sequential.payload = MarkerPayload(str(root / "marker"))  # pickled with the module
    torch.save(sequential, root / "head" / "weights.bin")
    return "head/weights.bin"


# (id, damage(root) returning the file the message must name (relative), key words[, the
# exception when it is not DamagedFileError])
DAMAGED = [
    ("truncated-weights", _truncate("head/weights.bin"), ["damaged", "model again"]),
    ("empty-weights", _write("head/weights.bin", b""), ["damaged"]),
    ("garbage-weights", _write("head/weights.bin", b"not a torch file at all"), ["damaged"]),
    (
        "weights-of-another-head",
        _torch_save("head/weights.bin", {"other": torch.ones(2)}),
        ["does not fit", "GatedHead"],
    ),
    (
        "weights-not-a-dict",
        _torch_save("head/weights.bin", [torch.ones(2)]),
        ["not a plain state dict"],
    ),
    ("garbage-config", _write("config.json", b"{not json"), ["damaged", "not valid JSON"]),
    ("binary-config", _write("config.json", b"\xff\xfe\x00garbage"), ["damaged"]),
    ("config-is-a-list", _write("config.json", b"[1, 2]"), ["JSON object", "list"]),
    (
        "config-other-keys",
        _write("config.json", b'{"hidden_size": 3}'),
        ["'encoders' and 'head'", "hidden_size"],
    ),
    ("config-head-record", _edit_config(head="GatedHead"), ["damaged", "GatedHead"]),
    (
        "config-not-a-head",
        _edit_config(head={"module": "torch.nn", "class": "Linear"}),
        ["not a EncoderHead subclass"],
        TypeError,
    ),
    (
        "config-traversal-key",
        _edit_config(
            encoders=[
                {
                    "key": "../x",
                    "module": "tests.quaterion_models.toy_encoders",
                    "class": "StackEncoder",
                }
            ]
        ),
        ["invalid encoder key", "../x"],
    ),
    ("module-int", _edit_config(head=_record(123)), ["'head.module'", "must be str", "int 123"]),
    (
        "module-relative",
        _edit_config(head=_record("..quaterion_models")),
        ["'head.module'", "dotted Python name", "'..quaterion_models'"],
    ),
    ("module-empty", _edit_config(head=_record("")), ["'head.module'", "got ''"]),
    (
        "class-missing",
        _edit_config(head={"module": "quaterion_models.heads"}),
        ["'head.class'", "is missing"],
    ),
    (
        "class-list",
        _edit_config(head={"module": "quaterion_models.heads", "class": ["GatedHead"]}),
        ["'head.class'", "must be str", "list"],
    ),
    (
        "deeply-nested-config",
        _write("config.json", b"[" * 100_000 + b"]" * 100_000),
        ["not valid JSON", "nested too deeply"],
    ),
    (
        "config-over-16-mib",
        _write("config.json", b'{"encoders": [], "head": {}}' + b" " * 2**24),
        ["16777244 bytes", "at most 16777216"],
    ),
    ("empty-encoder-list", _edit_config(encoders=[]), ["'encoders'", "non-empty list"]),
    (
        "encoders-not-a-list",
        _edit_config(encoders={"default": _record("tests.quaterion_models.toy_encoders")}),
        ["'encoders'", "must be list", "dict"],
    ),
    (
        "encoder-record-not-a-dict",
        _edit_config(encoders=["StackEncoder"]),
        ["'encoders[0]'", "must be dict", "str 'StackEncoder'"],
    ),
    (
        "encoder-key-int",
        _edit_config(encoders=[_encoder_record(5)]),
        ["'encoders[0].key'", "int 5"],
    ),
    (
        "duplicate-encoder-key",
        _edit_config(encoders=[_encoder_record("default"), _encoder_record("default")]),
        ["'encoders[1].key'", "repeats an earlier key", "'default'"],
    ),
    ("head-config-garbage", _write("head/config.json", b"\x00\x01"), ["damaged"]),
    (
        "head-config-wrong-kwargs",
        _write("head/config.json", b'{"size": 4}'),
        ["does not fit", "GatedHead", "size"],
    ),
    (
        "head-config-bad-value",
        _write("head/config.json", b'{"input_embedding_size": 4, "dropout": 7}'),
        ["does not fit", "dropout", "7", "[0, 1)"],
    ),
    ("missing-config", _remove("config.json"), ["not a saved SimilarityModel"], FileNotFoundError),
    ("missing-weights", _remove("head/weights.bin"), ["does not exist"], FileNotFoundError),
    (
        "missing-head-dir",
        _remove("head"),
        ["not a complete saved SimilarityModel"],
        FileNotFoundError,
    ),
    (
        "missing-encoder-dir",
        _remove("encoders/default"),
        ["save the model again"],
        FileNotFoundError,
    ),
    (
        "malicious-state-dict",
        _malicious_gated_weights,
        ["plant_marker", "not a plain state dict", "trusted=True"],
        UnsafeFileError,
    ),
    (
        "config-edited-to-sequential",
        _edit_config_to_sequential_head,
        ["plant_marker", "trusted=True"],
        UnsafeFileError,
    ),
]

# (id, head/config.json content, key words): each field is type- and range-checked. 2**30
# gates would take 4 GiB: the head is first built on the meta device and compared with
# weights.bin, so nothing is allocated.
HEAD_CONFIGS = [
    (
        "width-2**40",
        '{"input_embedding_size": 1099511627776}',
        ["1099511627776", "[1, 2147483647]"],
    ),
    ("width-5000-digits", '{"input_embedding_size": %s}' % ("9" * 5000), ["not valid JSON"]),
    ("width-bool", '{"input_embedding_size": true}', ["'input_embedding_size'", "bool True"]),
    (
        "width-2**30",
        '{"input_embedding_size": 1073741824}',
        ["gates: (4,) in the file, (1073741824,)"],
    ),
    ("dropout-str", '{"input_embedding_size": 4, "dropout": "0.1"}', ["fit GatedHead", "dropout"]),
]
DAMAGED += [
    (f"head-{case}", _write("head/config.json", text.encode()), words)
    for case, text, words in HEAD_CONFIGS
]


@pytest.mark.parametrize(
    "damage, error, words",
    [
        pytest.param(damage, error[0] if error else DamagedFileError, words, id=case_id)
        for case_id, damage, words, *error in DAMAGED
    ],
)
def test_damaged_or_unsafe_directory(tmp_path, damage, error, words):
    root = tmp_path / "model"
    SimilarityModel(encoders=StackEncoder(4), head=GatedHead(4)).save(str(root))
    named = damage(root)
    with pytest.raises(error) as info:
        SimilarityModel.load(str(root))
    message = str(info.value)
    assert str(root / named) in message, message
    for word in words:
        assert word in message, (word, message)
    assert not (root / "marker").exists()  # nothing from a file was run


def test_not_a_model_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        SimilarityModel.load(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty.*config\.json does not exist"):
        SimilarityModel.load(str(tmp_path / "empty"))


# ----------------------------------------------------------------------------------------------
# SimilarityModel: construction, forward and encode.


def _rows(n: int = 2, width: int = 5, dtype=torch.float32) -> list:
    return list(torch.rand(n, width, dtype=dtype))


def _encode(encoders, head, records=None, model_dtype=None, **kwargs) -> Callable[[], Any]:
    """``SimilarityModel(encoders, head)``, cast to ``model_dtype`` if given, encoding
    ``records`` (default: two float32 rows, 5 wide) with ``kwargs``."""

    def run():
        model = SimilarityModel(encoders=encoders, head=head)
        if model_dtype is not None:
            model = model.to(model_dtype)
        return model.encode(_rows() if records is None else records, **kwargs)

    return run


class SingleRowDroppingHead(EmptyHead):
    """Passes batches through, except that a batch of one record comes back empty."""

    def transform(self, input_vectors: torch.Tensor) -> torch.Tensor:
        return input_vectors[: input_vectors.shape[0] - (input_vectors.shape[0] == 1)]


MODEL_CASES = [
    (
        "head-narrower-than-encoders",
        lambda: SimilarityModel(encoders=StackEncoder(5), head=GatedHead(4)),
        ValueError,
        ["GatedHead", "input_embedding_size=4", "add up to 5", "get_encoders_output_size"],
    ),
    (
        "encoder-misreports-width",
        _encode(MisreportingEncoder(5, 4), EmptyHead(4)),
        ValueError,
        ["'default'", "MisreportingEncoder", "(2, 5)", "embedding_size is 4"],
    ),
    (
        "sequential-head-wrong-width",
        _encode(StackEncoder(5), SequentialHead(nn.Linear(4, 2), output_size=2)),
        ValueError,
        ["SequentialHead", "5 wide", "{'default': 5}", "get_encoders_output_size"],
    ),
    (
        "head-misreports-output-size",
        _encode(StackEncoder(5), SequentialHead(nn.Linear(5, 3), output_size=4)),
        ValueError,
        ["SequentialHead", "(2, 3)", "output_size is 4"],
    ),
    (
        "float64-input-float32-model",
        _encode(LinearEncoder(5, 4), GatedHead(4), _rows(dtype=torch.float64)),
        TypeError,
        ["'default'", "LinearEncoder", "torch.float64", "torch.float32", "model.to(torch.float64)"],
    ),
    (
        "float32-input-bf16-model",
        _encode(LinearEncoder(5, 4), GatedHead(4), model_dtype=torch.bfloat16),
        TypeError,
        ["torch.float32", "torch.bfloat16", "model.to(torch.float32)"],
    ),
    (
        "float64-embeddings-float32-head",
        _encode(
            StackEncoder(5),
            SequentialHead(nn.Linear(5, 2), output_size=2),
            _rows(dtype=torch.float64),
        ),
        TypeError,
        ["head SequentialHead", "torch.float64", "torch.float32", "model.to(torch.float64)"],
    ),
    (
        "no-encoders",
        lambda: SimilarityModel(encoders={}, head=EmptyHead(5)),
        ValueError,
        ["at least one encoder", "{}"],
    ),
    (
        "single-encoder-drops-rows",
        _encode(FirstRowsEncoder(5), EmptyHead(5), _rows(3)),
        ValueError,
        ["3 records", "2 rows", "records 0..2", "one row per record"],
    ),
    (
        "head-drops-a-row-in-a-later-batch",
        _encode(StackEncoder(5), SingleRowDroppingHead(5), _rows(3), batch_size=2),
        ValueError,
        ["SingleRowDroppingHead", "1 records", "0 rows", "records 2..2"],
    ),
    (
        "encoders-disagree-on-rows",
        _encode({"a": StackEncoder(5), "b": FirstRowsEncoder(5)}, EmptyHead(10), _rows(3)),
        ValueError,
        ["different numbers of rows", "'a': 3", "'b': 2"],
    ),
    (
        "batch-without-an-encoder-input",
        lambda: SimilarityModel(encoders={"text": StackEncoder(5)}, head=EmptyHead(5))(
            {"data": {"txt": torch.rand(2, 5)}, "meta": [{}, {}]}
        ),
        KeyError,
        ["'text'", "['txt']", "get_collate_fn"],
    ),
    (
        "batch-size-zero",
        _encode(StackEncoder(5), EmptyHead(5), batch_size=0),
        ValueError,
        ["batch_size", "0", "positive"],
    ),
]


@pytest.mark.parametrize(
    "run, error, words",
    [pytest.param(*row[1:], id=row[0]) for row in CONSTRUCTION + MODEL_CASES],
)
def test_bad_calls(run, error, words):
    with pytest.raises(error) as info:
        run()
    message = str(info.value)
    for word in words:
        assert word in message, (word, message)


class ConcatRowsEncoder(StackEncoder):
    """Each record is a ``(k, 5)`` block of rows; the collate concatenates the blocks."""

    def get_collate_fn(self):
        return torch.cat


def test_a_lone_record_may_give_several_rows_as_in_the_original():
    model = SimilarityModel(encoders=ConcatRowsEncoder(5), head=EmptyHead(5))
    block = torch.rand(3, 5)
    torch.testing.assert_close(model.encode(block, to_numpy=False), block)  # one record
    with pytest.raises(ValueError, match="2 records .* gave 6 rows"):
        model.encode([block, block])  # which rows belong to which record is lost


def test_output_width_is_checked_on_the_first_batch_only():
    encoder = MisreportingEncoder(4, 4)  # honest: 4 wide, says 4
    model = SimilarityModel(encoders=encoder, head=EmptyHead(4))
    reads = encoder.size_reads  # construction reads it once to size-check the head
    model.encode(_rows(10, 4), batch_size=2)  # five batches
    assert encoder.size_reads == reads + 1
    model.encoders = {"default": MisreportingEncoder(4, 3)}  # replaced (as the cache does)
    with pytest.raises(ValueError, match="embedding_size is 3"):
        model.encode(_rows(2, 4))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_models_of_every_float_dtype_encode_correctly(dtype):
    model = SimilarityModel(encoders=LinearEncoder(5, 4), head=GatedHead(4)).to(dtype)
    rows = _rows(3, dtype=dtype)
    encoder = model.encoders["default"]
    with torch.no_grad():
        expected = encoder.linear(torch.stack(rows)) * torch.tanh(model.head.gates)
    result = model.encode(rows, batch_size=2, to_numpy=False)
    assert result.dtype == dtype
    torch.testing.assert_close(result, expected)
    as_numpy = model.encode(rows)  # bfloat16 comes back as float32 (numpy has no bf16)
    np_dtype = {torch.float64: np.float64}.get(dtype, np.float32)
    assert as_numpy.dtype == np_dtype
    np.testing.assert_allclose(as_numpy, expected.float().numpy(), rtol=1e-6)


def test_batches_of_one_match_one_big_batch():
    model = SimilarityModel(encoders=LinearEncoder(5, 4), head=GatedHead(4))
    rows = _rows(3)
    one_by_one = model.encode(rows, batch_size=1, to_numpy=False)
    torch.testing.assert_close(one_by_one, model.encode(rows, batch_size=32, to_numpy=False))
    single = model.encode(rows[0], to_numpy=False)  # one record, not a list
    assert single.shape == (1, 4)
    torch.testing.assert_close(single[0], one_by_one[0])


def test_unicode_and_space_paths_round_trip(tmp_path):
    target = tmp_path / "mödel dir" / "sérvable 1"
    model = SimilarityModel(encoders=LinearEncoder(5, 4), head=GatedHead(4))
    rows = _rows(2)
    model.save(str(target))
    model.save(str(target))  # the swap path of a second save
    loaded = SimilarityModel.load(str(target))
    torch.testing.assert_close(
        loaded.encode(rows, to_numpy=False), model.encode(rows, to_numpy=False)
    )


@pytest.mark.parametrize(
    "record",
    [
        {"module": "os", "class": "system"},  # would run a shell command if called
        {"module": "torch.nn", "class": "Linear"},
    ],
)
def test_switch_configs_naming_other_callables_are_refused(tmp_path, record):
    marker = tmp_path / "marker"
    head_dir = tmp_path / "head"
    head_dir.mkdir()
    SwitchHead({"a": GatedHead(3), "b": EmptyHead(3)}, input_embedding_size=3).save(str(head_dir))
    config = json.loads((head_dir / "config.json").read_text())
    config["heads"]["a"] = {"class": record, "config": {"command": f"touch '{marker}'"}}
    (head_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(TypeError, match=r"config\.json names .* not a EncoderHead subclass"):
        SwitchHead.load(str(head_dir))
    assert not marker.exists()

    encoder_dir = tmp_path / "encoder"
    encoder_dir.mkdir()
    (encoder_dir / "config.json").write_text(json.dumps({"encoders": {"a": record}}))
    (encoder_dir / "a").mkdir()
    with pytest.raises(TypeError, match="not a Encoder subclass"):
        SwitchEncoder.load(str(encoder_dir))


def test_switch_head_round_trip_still_loads(tmp_path):
    head = SwitchHead({"a": GatedHead(3), "b": EmptyHead(3)}, input_embedding_size=3)
    with torch.no_grad():
        head.a.gates.fill_(0.5)
    head.save(str(tmp_path))
    loaded = SwitchHead.load(str(tmp_path))
    x, meta = torch.rand(3, 3), [{"encoder": "a"}, {"encoder": "b"}, {"encoder": "a"}]
    torch.testing.assert_close(loaded(x, meta=meta), head(x, meta=meta))
