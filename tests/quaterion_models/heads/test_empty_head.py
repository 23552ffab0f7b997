import torch

from quaterion_models.heads import EmptyHead


def test_identity_and_no_parameters():
    head = EmptyHead(5)
    x = torch.rand(3, 5)
    assert head.output_size == 5
    assert torch.equal(head(x), x)
    assert list(head.state_dict()) == []
    assert head.get_config_dict() == {"input_embedding_size": 5, "dropout": 0.0}


def test_round_trip(tmp_path):
    EmptyHead(4, dropout=0.3).save(str(tmp_path))
    loaded = EmptyHead.load(str(tmp_path))
    assert loaded.output_size == 4 and loaded.dropout.p == 0.3
