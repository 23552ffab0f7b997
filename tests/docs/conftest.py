"""Fixtures of the documentation tests: import the scripts in docs/scripts by file name."""

import importlib
import os
import sys

import pytest
import torch

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPTS_DIR = os.path.join(REPO_ROOT, "docs", "scripts")


@pytest.fixture
def doc_script(monkeypatch):
    """``doc_script("plot_x")`` imports ``docs/scripts/plot_x.py`` (its helpers import as
    top-level modules, as when the script is run directly)."""
    monkeypatch.syspath_prepend(SCRIPTS_DIR)
    monkeypatch.syspath_prepend(REPO_ROOT)

    def load(name):
        module = importlib.import_module(name)
        assert os.path.dirname(os.path.abspath(module.__file__)) == SCRIPTS_DIR
        return module

    yield load
    for name in [
        n
        for n, m in sys.modules.items()
        if getattr(m, "__file__", None)
        and os.path.dirname(os.path.abspath(m.__file__)) == SCRIPTS_DIR
    ]:
        del sys.modules[name]


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)
