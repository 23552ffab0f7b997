"""A tiny text servable (2-layer BERT + gated skip head) and its ONNX export, shared by module."""

import pytest
import torch

from quaterion_models import SimilarityModel
from quaterion_models.encoders.extras.transformer_encoder import TransformerEncoder
from quaterion_models.heads import SkipConnectionHead
from tests.quaterion_models.tiny_models import write_tiny_bert


def text_model(path: str) -> SimilarityModel:
    """Tiny BERT (mean pooling, normalised) + a skip-connection head with random weights."""
    encoder = TransformerEncoder(write_tiny_bert(path), normalize=True, max_length=32)
    head = SkipConnectionHead(encoder.embedding_size)
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in head.parameters():
            parameter.normal_()  # gates open: the head changes the vectors
    return SimilarityModel(encoder, head).eval()


@pytest.fixture(scope="package")
def exported(tmp_path_factory):
    """``(torch model, export dir)``."""
    root = tmp_path_factory.mktemp("onnx_text")
    model = text_model(str(root / "bert"))
    model.export_onnx(str(root / "export"))
    return model, root / "export"
