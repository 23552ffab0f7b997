import json
import pickle

import pytest
import torch
from torch import nn

from quaterion_models.heads import EncoderHead, GatedHead
from tests.quaterion_models.file_tools import retag_storages, write_malicious_state_dict


class ScaleHead(EncoderHead):
    """Multiplies by a learnable scalar; records what ``transform`` received."""

    def __init__(self, input_embedding_size: int, dropout: float = 0.0, **kwargs):
        super().__init__(input_embedding_size, dropout=dropout, **kwargs)
        self.scale = nn.Parameter(torch.tensor(3.0))
        self.seen = None

    @property
    def output_size(self) -> int:
        return self.input_embedding_size

    def transform(self, input_vectors):
        self.seen = input_vectors
        return input_vectors * self.scale


def test_forward_is_transform_of_dropout():
    head = ScaleHead(4, dropout=0.5).train()
    x = torch.ones(64, 4)
    out = head(x, meta=[{}] * 64)
    dropped = head.seen
    # Dropout(0.5) zeroes entries and scales survivors by 2.
    assert set(dropped.unique().tolist()) <= {0.0, 2.0} and (dropped == 0).any()
    torch.testing.assert_close(out, dropped * 3.0)


def test_dropout_module_and_config():
    assert isinstance(ScaleHead(4).dropout, nn.Identity)
    assert isinstance(ScaleHead(4, dropout=0.2).dropout, nn.Dropout)
    assert ScaleHead(4, dropout=0.2).dropout.p == 0.2
    head = ScaleHead(4, dropout=0.2, unused="ignored")
    assert head.get_config_dict() == {"input_embedding_size": 4, "dropout": 0.2}


def test_abstract_members_name_the_class():
    head = EncoderHead(3)
    with pytest.raises(NotImplementedError, match="EncoderHead.transform"):
        head(torch.ones(1, 3))
    with pytest.raises(NotImplementedError, match="EncoderHead.output_size"):
        _ = head.output_size


def test_save_writes_state_dict_and_config(tmp_path):
    head = ScaleHead(4, dropout=0.1)
    with torch.no_grad():
        head.scale.fill_(7.0)
    head.save(str(tmp_path))
    assert json.loads((tmp_path / "config.json").read_text()) == {
        "input_embedding_size": 4,
        "dropout": 0.1,
    }
    state = torch.load(tmp_path / "weights.bin", weights_only=True)
    assert list(state) == ["scale"] and state["scale"].item() == 7.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "weights.bin"]
    loaded = ScaleHead.load(str(tmp_path))
    assert loaded.scale.item() == 7.0 and loaded._dropout_prob == 0.1


def test_load_of_file_written_by_plain_torch_save(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"input_embedding_size": 3, "dropout": 0.0}))
    torch.save({"gates": torch.tensor([0.5, -1.0, 3.0])}, tmp_path / "weights.bin")
    head = GatedHead.load(str(tmp_path))
    x = torch.tensor([[1.0, 2.0, 3.0]])
    expected = x * torch.tanh(torch.tensor([0.5, -1.0, 3.0]))
    torch.testing.assert_close(head(x), expected)


def test_head_saved_on_gpu_loads_on_cpu(tmp_path):
    head = GatedHead(3)
    with torch.no_grad():
        head.gates.copy_(torch.tensor([0.1, 0.2, 0.3]))
    head.save(str(tmp_path))
    retag_storages(tmp_path / "weights.bin", "cuda:0")
    if not torch.cuda.is_available():  # the file really is GPU-tagged: plain torch.load fails
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(tmp_path / "weights.bin", weights_only=True)
    loaded = GatedHead.load(str(tmp_path))
    assert loaded.gates.device.type == "cpu"
    torch.testing.assert_close(loaded.gates.detach(), torch.tensor([0.1, 0.2, 0.3]))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    model_dir = tmp_path / "head"
    model_dir.mkdir()
    GatedHead(3).save(str(model_dir))
    marker = tmp_path / "marker.txt"
    write_malicious_state_dict(model_dir / "weights.bin", marker, {"gates": torch.ones(3)})

    # The payload is live: an unsafe load would run it.
    torch.load(model_dir / "weights.bin", weights_only=False)
    assert marker.exists()
    marker.unlink()

    with pytest.raises(pickle.UnpicklingError) as info:
        GatedHead.load(str(model_dir))
    message = str(info.value)
    assert str(model_dir / "weights.bin") in message
    assert "not a plain state dict" in message
    assert not marker.exists()


def test_non_state_dict_and_missing_files_are_clear_errors(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"input_embedding_size": 3}))
    with pytest.raises(FileNotFoundError, match="weights.bin"):
        GatedHead.load(str(tmp_path))
    torch.save([torch.ones(3)], tmp_path / "weights.bin")
    with pytest.raises(ValueError, match="not a plain state dict"):
        GatedHead.load(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="config.json"):
        GatedHead.load(str(tmp_path / "nowhere"))
