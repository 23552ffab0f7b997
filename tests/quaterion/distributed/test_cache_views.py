"""Cached augmented views under real 2-process DDP (gloo), started by Lightning."""

import pytest
import torch

from tests.quaterion.distributed import views_script as script
from tests.quaterion.train.cache.test_ddp import _launch_module
from tests.quaterion.train.cache.test_views import N, Jittered, _reference
from tests.quaterion.train.helpers import CountingEncoder

pytestmark = pytest.mark.slow


def test_two_ranks_fill_every_view_once_and_serve_the_same_choice(tmp_path):
    ranks = _launch_module("tests.quaterion.distributed.views_script", [tmp_path / "two"], 2)
    reference = _reference(CountingEncoder(), Jittered(), script.VIEWS)  # (views, n, d)
    assert sum(rank["calls"] for rank in ranks) == script.VIEWS * N  # split across the ranks
    assert all(rank["calls"] > 0 for rank in ranks)
    chosen = []
    for epoch in ranks[0]["served"]:
        served = torch.tensor(epoch)
        distance = (served[None] - reference).abs().amax(dim=2)
        assert (distance.min(dim=0).values <= 1e-5).all()  # one of its K encodings
        chosen.append(distance.argmin(dim=0).tolist())
    assert len(chosen) == script.EPOCHS and len({tuple(c) for c in chosen}) > 1
    single = _launch_module("tests.quaterion.distributed.views_script", [tmp_path / "one"], 1)
    # the same vectors on every rank, and in a one-process run
    for other in (ranks[1], single[0]):
        torch.testing.assert_close(torch.tensor(other["served"]), torch.tensor(ranks[0]["served"]))
