import pickle

import pytest
import torch

from quaterion_models import SimilarityModel
from quaterion_models.encoders import SwitchEncoder
from quaterion_models.encoders.switch_encoder import inverse_permutation
from quaterion_models.heads import EmptyHead
from tests.quaterion_models.toy_encoders import (
    ConstantEncoder,
    LinearEncoder,
    StackEncoder,
    ZerosOnesSwitch,
)

RECORDS = ["zeros", "zeros", "ones", "ones", "zeros", "zeros", "ones"]


def make_switch():
    return ZerosOnesSwitch(options={"a": ConstantEncoder(0.0), "b": ConstantEncoder(1.0)})


def test_inverse_permutation_against_loop():
    perm = torch.randperm(9)
    inv = inverse_permutation(perm)
    for i in range(9):
        assert inv[perm[i]] == i
    assert torch.equal(perm[inv], torch.arange(9))


def test_encode_keeps_record_order_and_meta():
    model = SimilarityModel(encoders=make_switch(), head=EmptyHead(3))
    out = model.encode(RECORDS, batch_size=4)
    assert out.shape == (7, 3)
    assert out[:, 0].tolist() == [0, 0, 1, 1, 0, 0, 1]
    meta = model.encoders["default"].get_meta_extractor()(RECORDS)
    assert [m["encoder"] for m in meta] == ["a", "a", "b", "b", "a", "a", "b"]
    assert model.get_collate_fn()(RECORDS)["meta"] == meta


def test_switch_round_trip(tmp_path):
    model = SimilarityModel(encoders=make_switch(), head=EmptyHead(3))
    model.save(str(tmp_path))
    loaded = SimilarityModel.load(str(tmp_path))
    switch = loaded.encoders["default"]
    assert type(switch) is ZerosOnesSwitch and set(switch.options) == {"a", "b"}
    assert loaded.encode(RECORDS)[:, 0].tolist() == [0, 0, 1, 1, 0, 0, 1]


def test_collate_single_kind_and_pickle():
    collate = pickle.loads(pickle.dumps(make_switch().get_collate_fn()))
    batch = collate(["ones", "ones"])
    assert set(batch["batches"]) == {"b"}
    assert batch["ordering"] == {"a": [], "b": [0, 1]}
    assert make_switch()(batch).tolist() == [[1.0] * 3] * 2


def test_inconsistent_sizes_raise():
    with pytest.raises(RuntimeError, match="inconsistent"):
        ZerosOnesSwitch(
            options={"a": ConstantEncoder(0.0, size=3), "b": ConstantEncoder(1.0, size=4)}
        )


def test_trainable_children_and_freezing():
    switch = SwitchEncoder(
        {"frozen": LinearEncoder(is_trainable=False), "free": LinearEncoder(is_trainable=True)}
    )
    assert switch.trainable and switch.embedding_size == 4
    assert {k.split(".")[0] for k in switch.state_dict()} == {"frozen", "free"}
    switch.disable_gradients_if_required()
    assert not any(p.requires_grad for p in switch.options["frozen"].parameters())
    assert all(p.requires_grad for p in switch.options["free"].parameters())
    assert not SwitchEncoder({"x": StackEncoder(4)}).trainable


def test_unknown_selection_is_a_clear_error():
    class Bad(ZerosOnesSwitch):
        @classmethod
        def encoder_selection(cls, record):
            return "c"

    with pytest.raises(ValueError, match="'c'"):
        Bad(options={"a": ConstantEncoder(0.0)}).get_collate_fn()(["x"])
    with pytest.raises(NotImplementedError, match="SwitchEncoder.encoder_selection"):
        SwitchEncoder.encoder_selection("x")


@pytest.mark.parametrize("key", ["a/b", "a\\b", "..", ""])
def test_option_keys_that_save_could_not_load_back_are_refused(key):
    with pytest.raises(ValueError, match="option key"):
        ZerosOnesSwitch(options={key: ConstantEncoder(0.0), "b": ConstantEncoder(1.0)})
