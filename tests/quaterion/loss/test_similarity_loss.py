import json

import pytest
import torch

from quaterion.distances import Cosine, Distance, Euclidean
from quaterion.loss import SimilarityLoss


def test_resolves_distance_once_and_stores_name_as_passed():
    loss = SimilarityLoss()
    assert loss.distance_metric is Cosine
    assert loss.distance_metric_name is Distance.COSINE
    named = SimilarityLoss("euclidean")
    assert named.distance_metric is Euclidean
    assert named.distance_metric_name == "euclidean"
    assert isinstance(loss, torch.nn.Module)


@pytest.mark.parametrize("name", [Distance.MANHATTAN, "dot_product"])
def test_config_dict_is_json(name):
    config = SimilarityLoss(name).get_config_dict()
    assert json.loads(json.dumps(config)) == {"distance_metric_name": str(name)}


def test_unknown_distance_lists_valid_names():
    with pytest.raises(ValueError) as err:
        SimilarityLoss("hamming")
    assert "'hamming'" in str(err.value) and "'manhattan'" in str(err.value)
