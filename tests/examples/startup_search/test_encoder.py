"""Tests of ``StartupEncoder`` with the locally installed all-MiniLM-L6-v2."""

import pytest
import torch

from examples.startup_search.encoder import StartupEncoder, extract_texts


def test_extract_texts():
    assert extract_texts(["a", "b"]) == ["a", "b"]
    assert extract_texts([{"description": "x", "industry": "y"}, {"description": "z"}]) == [
        "x",
        "z",
    ]
    with pytest.raises(TypeError, match="Expecting list of strings or dicts as inputs"):
        extract_texts([1, 2])


def test_encoder_outputs_ordinary_tensors(local_minilm, no_network, tmp_path):
    encoder = StartupEncoder(local_minilm)
    assert encoder.trainable is False and encoder.embedding_size == 384
    assert encoder.get_collate_fn() is extract_texts
    out = encoder(["fast payments for small shops", "telemedicine for rural clinics"])
    assert out.shape == (2, 384)
    assert not out.is_inference()
    # A trainable layer on top can back-propagate.
    layer = torch.nn.Linear(384, 2)
    layer(out).sum().backward()
    assert layer.weight.grad is not None

    encoder.save(str(tmp_path))
    reloaded = StartupEncoder.load(str(tmp_path))
    torch.testing.assert_close(reloaded(["a startup"]), encoder(["a startup"]))
    assert no_network == []
