"""Every head of the family: servable -> export_onnx -> OnnxSimilarityModel encodes what the
torch servable (and the servable saved and loaded again) encodes, for 0, 1 and many rows."""

import numpy as np
import pytest
import torch
from torch import nn

from quaterion_models import SimilarityModel, heads
from quaterion_models.onnx import OnnxSimilarityModel
from tests.quaterion_models.toy_encoders import StackEncoder

D = 6

HEADS = {
    "empty": lambda: heads.EmptyHead(D),
    "gated": lambda: heads.GatedHead(D, dropout=0.3),
    "skip": lambda: heads.SkipConnectionHead(D, dropout=0.1, skip_dropout=0.2, n_layers=2),
    "softmax": lambda: heads.SoftmaxEmbeddingsHead(2, 4, D, dropout=0.1),
    "stacked": lambda: heads.StackedProjectionHead(D, [9, 3], activation_fn="gelu", dropout=0.1),
    "widening": lambda: heads.WideningHead(D, expansion_factor=1.5, activation_fn="tanh"),
    "sequential": lambda: heads.SequentialHead(nn.Linear(D, 5), nn.LayerNorm(5), output_size=5),
}


@pytest.mark.parametrize("name", sorted(HEADS))
def test_every_head_round_trips_through_save_and_onnx(tmp_path, name):
    torch.manual_seed(3)
    head = HEADS[name]()
    with torch.no_grad():
        for parameter in head.parameters():  # away from the inits (gates all equal, ...)
            parameter.add_(torch.randn_like(parameter) * 0.5)
    model = SimilarityModel(StackEncoder(D), head)
    model.save(str(tmp_path / "servable"))
    loaded = SimilarityModel.load(str(tmp_path / "servable"))
    model.export_onnx(str(tmp_path / "export"))
    exported = OnnxSimilarityModel.load(str(tmp_path / "export"))
    assert exported.head_only  # StackEncoder is not traceable: the graph takes embeddings
    rows = torch.randn(300, D, generator=torch.Generator().manual_seed(4))
    for count in (0, 1, 300):
        records = list(rows[:count])
        expected = model.encode(records, batch_size=64)
        assert expected.shape == (count, head.output_size)
        for batch_size in (1, 7, 512):
            np.testing.assert_allclose(
                loaded.encode(records, batch_size=batch_size), expected, rtol=1e-5, atol=1e-6
            )
            onnx_vectors = exported.encode([r.numpy() for r in records], batch_size=batch_size)
            assert onnx_vectors.dtype == np.float32
            np.testing.assert_allclose(onnx_vectors, expected, rtol=1e-5, atol=1e-6)
