"""``save_servable`` without a process group: the rank a launcher put in the environment
decides (a process started by ``torchrun`` before its group exists is not rank 0)."""

import warnings

import pytest
from pytorch_lightning.utilities import rank_zero_only

from quaterion import distributed
from quaterion_models import SimilarityModel
from tests.quaterion.train.helpers import Model


@pytest.mark.parametrize("rank, writes", [(0, True), (1, False)])
def test_save_servable_writes_on_rank_zero_only(tmp_path, monkeypatch, rank, writes):
    monkeypatch.setattr(rank_zero_only, "rank", rank)
    assert distributed.world_size() == 1
    assert distributed.is_global_rank_zero() is writes
    path = tmp_path / "servable"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Model().save_servable(str(path))
    skipped = [str(w.message) for w in caught if "wrote nothing" in str(w.message)]
    assert len(skipped) == (0 if writes else 1), skipped
    assert path.exists() is writes
    if writes:
        assert SimilarityModel.load(str(path)).encoders.keys() == {"default"}
