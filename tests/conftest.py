"""Fixtures for every test."""

import os

import pytest


@pytest.fixture(autouse=True)
def _restore_environment():
    """Undo what a test leaves in ``os.environ``.

    Tests run example and documentation scripts in-process; ``seed_everything`` there sets
    ``PL_GLOBAL_SEED``, which seeds Lightning's ``DistributedSampler`` in every DDP child
    launched later in the session (the multi-process tests then train on other batches).
    """
    saved = dict(os.environ)
    yield
    for name in set(os.environ) - set(saved):
        del os.environ[name]
    for name, value in saved.items():
        if os.environ.get(name) != value:
            os.environ[name] = value
