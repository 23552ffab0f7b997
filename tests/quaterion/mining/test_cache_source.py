"""Mining from a persisted encoder cache: the servable's head over stored rows, no encoding."""

import os

import pytest
import torch

from quaterion.mining import (
    CacheMismatchError,
    mine_hard_negatives,
    mine_pair_negatives,
    read_cached_embeddings,
)
from quaterion.train.cache import CacheConfig, CacheType
from tests.quaterion.mining.naive import assert_same_negatives, cosine_matrix
from tests.quaterion.train.cache.saved import rewrite_manifest
from tests.quaterion.train.helpers import CountingEncoder, Model, fit_data, fit_losses


def _fitted(tmp_path, pairs=False, cache_type=CacheType.CPU):
    encoder = CountingEncoder()
    config = CacheConfig(cache_type=cache_type, save_dir=str(tmp_path))
    model = Model(encoders={"default": encoder}, cache_config=config, pairs=pairs)
    (train, _), loaders = fit_data(pairs)
    fit_losses(model, *loaders, max_epochs=2)
    assert model.model.encoders["default"] is encoder  # the servable has the raw encoder back
    return model, encoder, train.samples


@pytest.mark.parametrize("cache_type", [CacheType.CPU, CacheType.DISK])
def test_group_cache_mines_like_fresh_embeddings_without_encoding(tmp_path, cache_type):
    model, encoder, samples = _fitted(tmp_path, cache_type=cache_type)
    calls = encoder.calls
    cached = read_cached_embeddings(tmp_path, model)
    mined = mine_hard_negatives(cached, num_negatives=3, range_min=1, show_progress=False)
    assert encoder.calls == calls  # neither reading nor mining ran the encoder

    fresh = model.model.encode([s.obj for s in samples], to_numpy=False)
    assert encoder.calls == calls + len(samples)
    torch.testing.assert_close(cached.vectors, fresh, rtol=1e-6, atol=1e-6)
    groups = torch.tensor([s.group for s in samples])
    torch.testing.assert_close(cached.groups, groups)
    expected = mine_hard_negatives(fresh, groups=groups, num_negatives=3, range_min=1,
                                   show_progress=False)  # fmt: skip
    assert_same_negatives(mined, expected.indices, expected.scores, cosine_matrix(fresh, fresh))


def test_pair_cache_feeds_mine_pair_negatives(tmp_path):
    model, encoder, samples = _fitted(tmp_path, pairs=True)
    calls = encoder.calls
    cached = read_cached_embeddings(str(tmp_path), model.model, batch_size=5)
    mined = mine_pair_negatives(samples, anchor_embeddings=cached.obj_a,
                                positive_embeddings=cached.obj_b, num_negatives=2,
                                show_progress=False)  # fmt: skip
    assert encoder.calls == calls
    expected = mine_pair_negatives(samples, model.model, num_negatives=2, show_progress=False)
    assert [(p.obj_a.tolist(), p.obj_b.tolist()) for p in mined] == [
        (p.obj_a.tolist(), p.obj_b.tolist()) for p in expected
    ]
    fresh_b = model.model.encode([s.obj_b for s in samples], to_numpy=False)
    torch.testing.assert_close(cached.obj_b, fresh_b, rtol=1e-6, atol=1e-6)
    expected_labels = torch.tensor([s.score for s in samples])
    torch.testing.assert_close(cached.columns["labels"], expected_labels)
    with pytest.raises(ValueError, match="mine_pair_negatives"):
        mine_hard_negatives(cached, show_progress=False)


def test_val_split_and_saved_servable(tmp_path):
    model, _, _ = _fitted(tmp_path)
    model.model.save(str(tmp_path / "servable"))
    (_, val), _ = fit_data()
    cached = read_cached_embeddings(tmp_path, str(tmp_path / "servable"), split="val")
    fresh = model.model.encode([s.obj for s in val.samples], to_numpy=False)
    torch.testing.assert_close(cached.vectors, fresh, rtol=1e-6, atol=1e-6)


def test_another_encoder_is_refused(tmp_path):
    model, _, _ = _fitted(tmp_path)
    with torch.no_grad():
        model.model.encoders["default"].linear.weight.add_(0.1)
    with pytest.raises(CacheMismatchError, match="state_sha256"):
        read_cached_embeddings(tmp_path, model)


@pytest.mark.parametrize("cache_type", [CacheType.CPU, CacheType.DISK])
def test_damaged_files_are_refused(tmp_path, cache_type):
    model, _, _ = _fitted(tmp_path, cache_type=cache_type)
    name = "default.rows" if cache_type == CacheType.DISK else "default"
    path = os.path.join(tmp_path, "encoders", name)
    with open(path, "r+b") as file:
        file.seek(os.path.getsize(path) - 4)
        file.write(b"\x00\x00\x80\x7f")
    with pytest.raises(CacheMismatchError, match="corrupt"):
        read_cached_embeddings(tmp_path, model)


def test_missing_or_foreign_caches_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no persisted encoder cache"):
        read_cached_embeddings(tmp_path, Model().model)
    model, _, _ = _fitted(tmp_path)
    with pytest.raises(CacheMismatchError, match="no 'test' split"):
        read_cached_embeddings(tmp_path, model, split="test")
    rewrite_manifest(tmp_path, lambda m: m.update(version=1))
    with pytest.raises(CacheMismatchError, match="manifest version"):
        read_cached_embeddings(tmp_path, model, verify=False)
    with pytest.raises(TypeError, match="SimilarityModel"):
        read_cached_embeddings(tmp_path, object())


def test_a_cache_without_the_encoders_code_is_named_as_written_by_an_older_version(tmp_path):
    model, _, _ = _fitted(tmp_path)

    def drop_code(manifest):
        for record in manifest["encoders"].values():
            del record["fingerprint"]["code"]

    rewrite_manifest(tmp_path, drop_code)
    with pytest.raises(CacheMismatchError, match="older version.*code of encoder 'default'"):
        read_cached_embeddings(tmp_path, model, verify=False)
