import json

import numpy as np
import pytest
import torch
from gensim.models import FastText
from gensim.models.fasttext import save_facebook_model

from quaterion_models import SimilarityModel
from quaterion_models.encoders.extras.fasttext_encoder import (
    FasttextEncoder,
    load_fasttext_model,
)
from quaterion_models.heads import EmptyHead
from quaterion_models.utils import DamagedFileError, UnsafeFileError

SENTENCES = [["aaa", "bbb", "ccc"], ["123", "aaa", "ddd"], ["ccc", "123"]]


class SplitFasttext(FasttextEncoder):
    @classmethod
    def get_tokens(cls, batch):
        return [record.split() for record in batch]


@pytest.fixture(scope="module")
def ft_model():
    return FastText(SENTENCES, vector_size=10, min_count=1, epochs=1, seed=1, workers=1)


@pytest.fixture
def kv_path(ft_model, tmp_path):
    path = tmp_path / "vectors.kv"
    ft_model.wv.save(str(path))
    return str(path)


def test_shapes_dtype_and_aggregations(ft_model, kv_path):
    encoder = SplitFasttext(kv_path, on_disk=False, aggregations=["avg", "max"])
    assert encoder.embedding_size == 20 and not encoder.trainable
    out = encoder([["aaa", "123"], ["aaa", "ccc"]])
    assert out.shape == (2, 20) and out.dtype == torch.float32
    vectors = np.stack([ft_model.wv.get_vector("aaa"), ft_model.wv.get_vector("123")])
    np.testing.assert_allclose(out[0, :10].numpy(), vectors.mean(0), rtol=1e-6)
    np.testing.assert_allclose(out[0, 10:].numpy(), vectors.max(0), rtol=1e-6)
    empty = encoder([[], []])
    assert empty.shape == (2, 20) and empty.dtype == torch.float32 and not empty.any()
    mixed = encoder([["aaa"], []])
    assert mixed.dtype == torch.float32
    assert "_device_tensor" in encoder.state_dict()


def test_oov_tokens_use_ngrams(ft_model, kv_path):
    encoder = SplitFasttext(kv_path, on_disk=True, aggregations=["min"])
    out = encoder([["aaab"]])
    np.testing.assert_allclose(out[0].numpy(), ft_model.wv.get_vector("aaab"), rtol=1e-6)


def test_aggregate_and_bad_options(kv_path):
    x = torch.tensor([[1.0, 5.0], [3.0, 2.0]])
    assert FasttextEncoder.aggregate(x, "avg").tolist() == [2.0, 3.5]
    assert FasttextEncoder.aggregate(x, "max").tolist() == [3.0, 5.0]
    assert FasttextEncoder.aggregate(x, "min").tolist() == [1.0, 2.0]
    with pytest.raises(RuntimeError, match="median"):
        FasttextEncoder.aggregate(x, "median")
    with pytest.raises(ValueError, match="aggregations"):
        SplitFasttext(kv_path, on_disk=False, aggregations=["median"])
    with pytest.raises(TypeError, match="`on_disk` must be True or False, got str 'false'"):
        SplitFasttext(kv_path, on_disk="false")
    with pytest.raises(NotImplementedError, match="get_tokens"):
        FasttextEncoder(kv_path, on_disk=False).get_collate_fn()(["a b"])


def test_model_round_trip(kv_path, tmp_path):
    encoder = SplitFasttext(kv_path, on_disk=False, aggregations=["avg", "max"])
    model = SimilarityModel(encoders=encoder, head=EmptyHead(20))
    records = ["aaa 123", "ccc", ""]
    before = model.encode(records)
    model.save(str(tmp_path / "m"))
    config = json.loads((tmp_path / "m" / "encoders" / "default" / "config.json").read_text())
    assert config == {"on_disk": False, "aggregations": ["avg", "max"]}
    with pytest.raises(UnsafeFileError, match=r"fasttext.model.*gensim.*trusted=True"):
        SimilarityModel.load(str(tmp_path / "m"))  # gensim files are pickles: opt-in needed
    loaded = SimilarityModel.load(str(tmp_path / "m"), trusted=True)
    assert type(loaded.encoders["default"]) is SplitFasttext
    np.testing.assert_allclose(loaded.encode(records), before)


def test_load_fasttext_model_formats(ft_model, kv_path, tmp_path):
    word = ft_model.wv.get_vector("bbb")
    ft_model.save(str(tmp_path / "full.model"))
    save_facebook_model(ft_model, str(tmp_path / "facebook.bin"))
    for path in (tmp_path / "full.model", tmp_path / "facebook.bin", kv_path):
        vectors = load_fasttext_model(str(path))
        np.testing.assert_allclose(vectors.get_vector("bbb"), word, rtol=1e-5)
    (tmp_path / "junk").write_text("not a model")
    with pytest.raises(ValueError, match="junk"):
        load_fasttext_model(str(tmp_path / "junk"))


@pytest.mark.parametrize(
    "config, words",
    [
        ({"on_disk": "false", "aggregations": ["avg"]}, ["'on_disk'", "must be bool", "str"]),
        ({"aggregations": ["avg"]}, ["'on_disk'", "is missing"]),
        ({"on_disk": False, "aggregations": "avg"}, ["'aggregations'", "must be list"]),
        ({"on_disk": False, "aggregations": [1]}, ["'aggregations[0]'", "must be str"]),
    ],
)
def test_damaged_encoder_config_names_the_field(kv_path, tmp_path, config, words):
    SplitFasttext(kv_path, on_disk=False).save(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(DamagedFileError) as info:
        SplitFasttext.load(str(tmp_path), trusted=True)
    message = str(info.value)
    assert str(tmp_path / "config.json") in message
    for word in words:
        assert word in message, (word, message)
