"""A SimilarityIndex built from a TrainableModel takes its servable and its loss's distance."""

import pytest
import qdrant_edge  # noqa: F401  (the qdrant extra: a missing one fails, never skips)

from quaterion.loss import TripletLoss
from quaterion_models.index import (
    IndexConfigError,
    SimilarityIndex,
    servable_fingerprint,
)
from tests.quaterion.train.helpers import Model


def test_trainable_model_gives_servable_and_distance(tmp_path):
    model = Model(loss=TripletLoss(distance_metric_name="euclidean"))
    with SimilarityIndex(model, path=tmp_path / "index", show_progress=False) as index:
        assert index.distance == "euclidean"
        assert index.info.fingerprint == servable_fingerprint(model.model)
    # the saved servable (a directory path) is the same model: it opens the index
    model.save_servable(str(tmp_path / "servable"))
    with SimilarityIndex.open(str(tmp_path / "servable"), path=tmp_path / "index") as index:
        assert index.distance == "euclidean"
    # a loss with another distance than the recorded one is refused
    other = Model(loss=TripletLoss(distance_metric_name="cosine"))
    with pytest.raises(IndexConfigError, match="'euclidean', not 'cosine'"):
        SimilarityIndex(other, path=tmp_path / "index")
