"""``encode`` takes any sequence or iterator of records and names the bad record and encoder;
boolean flags of the public API are real bools; the original's ``EmptyHead`` of another width
is accepted; the helpers ``quaterion`` uses are public."""

import collections
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from quaterion_models import SimilarityModel
from quaterion_models.heads import EmptyHead, GatedHead, SequentialHead, WideningHead
from quaterion_models.utils import is_loading_trusted, trusted_loading
from tests.quaterion_models.file_tools import MarkerPayload
from tests.quaterion_models.toy_encoders import StackEncoder

GATE = math.tanh(2.0)  # GatedHead's initial gate


def _gated_model() -> SimilarityModel:
    return SimilarityModel(encoders=StackEncoder(5), head=GatedHead(5))


ROWS = torch.rand(5, 5, generator=torch.Generator().manual_seed(3))

# (id, build the inputs from a list of 5 row tensors)
COLLECTIONS = [
    ("list", list),
    ("tuple", tuple),
    ("generator", lambda rows: (row for row in rows)),
    ("map-iterator", lambda rows: map(lambda row: row, rows)),
    ("deque", collections.deque),
]


@pytest.mark.parametrize("make", [pytest.param(row[1], id=row[0]) for row in COLLECTIONS])
@pytest.mark.parametrize("batch_size", [2, np.int64(2), np.int32(5), 32])
def test_any_sequence_or_iterator_of_records(make, batch_size):
    result = _gated_model().encode(make(list(ROWS)), batch_size=batch_size, to_numpy=False)
    torch.testing.assert_close(result, ROWS * GATE)  # GatedHead: x * tanh(2)


class PairEncoder(StackEncoder):
    """Its records are ``(a, b)`` tuples of 3-vectors, embedded as ``cat(a, b)`` (width 6)."""

    def __init__(self):
        super().__init__(6)

    def get_collate_fn(self):
        return _cat_pairs


def _cat_pairs(batch: list) -> torch.Tensor:
    return torch.stack([torch.cat([a, b]) for a, b in batch])


PAIRS = [(ROWS[i, :3], ROWS[i, 2:]) for i in range(3)]


def test_tuple_the_encoder_takes_as_a_record_is_one_record_as_in_the_original():
    model = SimilarityModel(encoders=PairEncoder(), head=EmptyHead(6))
    got = model.encode(PAIRS[0], to_numpy=False)  # the original: one record
    torch.testing.assert_close(got, torch.cat(PAIRS[0])[None])
    # a list of pairs, and a tuple of pairs (not a record itself), are several records
    expected = torch.stack([torch.cat(pair) for pair in PAIRS])
    torch.testing.assert_close(model.encode(PAIRS, to_numpy=False), expected)
    torch.testing.assert_close(model.encode(tuple(PAIRS), to_numpy=False), expected)


def test_tuple_that_is_no_record_holds_the_records():
    model = _gated_model()
    rows = tuple(ROWS[:3])  # one record fails (the encoder returns a list): the original raised
    torch.testing.assert_close(model.encode(rows, to_numpy=False), ROWS[:3] * GATE)
    # the same once the first-batch checks have run
    torch.testing.assert_close(model.encode(rows, to_numpy=False), ROWS[:3] * GATE)
    torch.testing.assert_close(model.encode(rows[:1], to_numpy=False), ROWS[:1] * GATE)
    assert model.encode((), to_numpy=False).shape == (0, 5)


def test_tuple_failing_both_ways_says_how_it_was_read():
    model = SimilarityModel(encoders=PairEncoder(), head=EmptyHead(6))
    with pytest.raises(Exception) as info:
        model.encode((ROWS[0, :3], ROWS[0, :3], ROWS[0, :3]))  # no pair, no records of pairs
    notes = " ".join(getattr(info.value, "__notes__", []))
    assert "read the tuple as several records" in notes and "as one record" in notes, notes
    assert "pass a list" in notes


def test_a_tensor_is_still_one_record():
    model = _gated_model()
    torch.testing.assert_close(model.encode(ROWS[0], to_numpy=False), ROWS[:1] * GATE)
    # upstream: a (3, 5) tensor is one record, collated to (1, 3, 5) and squeezed back
    torch.testing.assert_close(model.encode(ROWS[:3], to_numpy=False), ROWS[:3] * GATE)


def test_generator_is_read_lazily_one_batch_at_a_time():
    pulled = []

    def records():
        for index, row in enumerate(ROWS):
            pulled.append(index)
            yield row

    model = _gated_model()
    seen = []
    model.head.register_forward_hook(lambda *args: seen.append(len(pulled)))
    model.encode(records(), batch_size=2)
    assert seen == [2, 4, 5]  # each forward ran before the next batch was read


T = torch.rand(5)

# (id, records, batch_size, exception, words)
BAD_RECORDS = [
    (
        "tensor-str-none",
        [T, "text", None],
        32,
        TypeError,
        ["encoder 'default' (StackEncoder)", "record 1 (str)", "record 0 (Tensor of shape (5,))"],
    ),
    (
        "none-in-a-later-batch",
        [T, T, T, None],
        2,
        TypeError,
        ["encoder 'default' (StackEncoder)", "cannot take record 3 (NoneType)"],
    ),
    (
        "shapes-differ",
        (T, T, torch.rand(4)),
        32,
        ValueError,
        ["record 2 (Tensor of shape (4,))", "record 0 (Tensor of shape (5,))", "same type"],
    ),
]


@pytest.mark.parametrize(
    "records, batch_size, error, words", [pytest.param(*r[1:], id=r[0]) for r in BAD_RECORDS]
)
def test_bad_record_is_named_with_its_index_and_encoder(records, batch_size, error, words):
    with pytest.raises(error) as info:
        _gated_model().encode(records, batch_size=batch_size)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def _sequential_dir_with_payload(tmp_path):
    """A SequentialHead whose weights.bin runs code when unpickled (trusted=True would run it)."""
    model = SimilarityModel(
        encoders=StackEncoder(4), head=SequentialHead(nn.Linear(4, 4), output_size=4)
    )
    model.save(str(tmp_path / "m"))
    sequential = nn.Sequential(nn.Linear(4, 4))
    sequential.payload = MarkerPayload(str(tmp_path / "marker"))
    torch.save(sequential, tmp_path / "m" / "head" / "weights.bin")
    return tmp_path / "m"


# (id, call(tmp_path), words)
NOT_BOOLS = [
    (
        "load-trusted-str",
        lambda p: SimilarityModel.load(str(_sequential_dir_with_payload(p)), trusted="false"),
        ["SimilarityModel.load", "`trusted`", "str 'false'"],
    ),
    (
        "load-trusted-int",
        lambda p: SimilarityModel.load(str(_sequential_dir_with_payload(p)), trusted=1),
        ["`trusted`", "int 1"],
    ),
    (
        "sequential-head-trusted-str",
        lambda p: SequentialHead.load(str(_sequential_dir_with_payload(p) / "head"), "yes"),
        ["SequentialHead.load", "`trusted`", "str 'yes'"],
    ),
    ("trusted-loading-str", lambda p: trusted_loading("false").__enter__(), ["`trusted`"]),
    ("is-loading-trusted-int", lambda p: is_loading_trusted(0), ["`trusted`", "int 0"]),
    (
        "encode-to-numpy-str",
        lambda p: _gated_model().encode(list(ROWS), to_numpy="no"),
        ["encode", "`to_numpy`", "str 'no'"],
    ),
    (
        "encode-batch-size-bool",
        lambda p: _gated_model().encode(list(ROWS), batch_size=True),
        ["encode", "`batch_size`", "bool"],
    ),
]


@pytest.mark.parametrize("call, words", [pytest.param(*r[1:], id=r[0]) for r in NOT_BOOLS])
def test_flags_must_be_real_bools(tmp_path, call, words):
    with pytest.raises(TypeError) as info:
        call(tmp_path)
    for word in words:
        assert word in str(info.value), (word, str(info.value))
    assert not (tmp_path / "marker").exists()  # nothing from the file ran
    assert not is_loading_trusted()


def test_numpy_bools_are_bools():
    result = _gated_model().encode(list(ROWS), to_numpy=np.bool_(False))
    assert isinstance(result, torch.Tensor)
    with trusted_loading(np.bool_(True)):
        assert is_loading_trusted()


def test_original_api_empty_head_of_another_width_warns_and_passes_rows_through(tmp_path):
    with pytest.warns(UserWarning, match=r"EmptyHead expects input_embedding_size=100 .* 5"):
        model = SimilarityModel(encoders={"test": StackEncoder(5)}, head=EmptyHead(100))
    torch.testing.assert_close(model.encode(list(ROWS), to_numpy=False), ROWS)
    model.save(str(tmp_path / "m"))  # the original could save it, so it must load
    assert (
        json.loads((tmp_path / "m" / "head" / "config.json").read_text())["input_embedding_size"]
        == 100
    )
    with pytest.warns(UserWarning, match="no parameters"):
        loaded = SimilarityModel.load(str(tmp_path / "m"))
    torch.testing.assert_close(loaded.encode(list(ROWS), to_numpy=False), ROWS)


class ScaledEmptyHead(EmptyHead):
    """A head with a scalar parameter: its width does not matter."""

    def __init__(self, input_embedding_size: int):
        super().__init__(input_embedding_size)
        self.scale = nn.Parameter(torch.full((1,), 3.0))

    def transform(self, input_vectors):
        return input_vectors * self.scale


def test_a_head_whose_parameters_have_another_shape_warns_too():
    with pytest.warns(UserWarning, match="no parameters of that width"):
        model = SimilarityModel(encoders=StackEncoder(5), head=ScaledEmptyHead(100))
    torch.testing.assert_close(model.encode(list(ROWS), to_numpy=False), ROWS * 3.0)


def test_a_head_without_parameters_still_may_not_misreport_its_output():
    model = SimilarityModel(encoders=StackEncoder(5), head=SequentialHead(nn.ReLU(), output_size=4))
    with pytest.raises(
        ValueError, match=r"SequentialHead returned \(5, 5\) but its output_size is 4"
    ):
        model.encode(list(ROWS))


@pytest.mark.parametrize("head", [GatedHead(100), WideningHead(100)], ids=["gated", "widening"])
def test_heads_whose_parameters_depend_on_the_width_are_refused(head):
    with pytest.raises(ValueError, match="input_embedding_size=100 but .* add up to 5"):
        SimilarityModel(encoders={"test": StackEncoder(5)}, head=head)


def test_helpers_used_by_quaterion_are_public_and_old_names_alias_them():
    import quaterion_models.utils._batch_checks as old_checks
    import quaterion_models.utils._files as old_files
    from quaterion_models.utils import batch_checks, files

    assert old_files is files and old_checks is batch_checks
    assert callable(files.save_torch) and callable(batch_checks.check_encoder_output)


def _batch_limited_collate(batch: list) -> torch.Tensor:
    if len(batch) > 2:
        raise RuntimeError("batches of at most 2 records")
    return torch.stack(batch)


class BatchLimitedEncoder(StackEncoder):
    """Every record is fine on its own; only batches over 2 fail."""

    def get_collate_fn(self):
        return _batch_limited_collate


def test_a_failure_that_is_no_single_records_fault_keeps_its_error_and_says_where():
    model = SimilarityModel(encoders={"txt": BatchLimitedEncoder(5)}, head=EmptyHead(5))
    with pytest.raises(RuntimeError, match="at most 2 records") as info:
        model.encode(list(ROWS), batch_size=4)
    assert "in encoder 'txt' (BatchLimitedEncoder) on records 0..3" in info.value.__notes__
    torch.testing.assert_close(model.encode(list(ROWS), batch_size=2, to_numpy=False), ROWS)


def test_the_models_collate_fn_names_the_record_too():
    collate = _gated_model().get_collate_fn()
    with pytest.raises(TypeError, match="encoder 'default' cannot take record 1 \\(NoneType\\)"):
        collate([T, None])
    batch = collate([T, T])
    torch.testing.assert_close(batch["data"]["default"], torch.stack([T, T]))
    assert batch["meta"] == [{}, {}]
