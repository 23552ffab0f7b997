import os

import pytest
import torch

from quaterion.train.cache import CacheEncoder, CacheType, InMemoryCacheEncoder
from tests.quaterion.train.helpers import CountingEncoder, stack_collate


def _filled(cache_type=CacheType.AUTO, n=5):
    encoder = CountingEncoder()
    cache = InMemoryCacheEncoder(encoder, cache_type)
    data = torch.randn(n, 4)
    keys = [f"k{i}" for i in range(n)]
    cache.fill_cache(keys[:3], data[:3], [{"i": i} for i in range(3)])
    cache.fill_cache(keys[3:], data[3:], [{"i": i} for i in range(3, n)])
    cache.finish_fill()
    return cache, encoder, data, keys


def test_trainable_encoder_is_rejected():
    with pytest.raises(ValueError, match="Trainable encoder can't be cached"):
        InMemoryCacheEncoder(CountingEncoder(trainable=True))


def test_forward_looks_up_rows_without_running_the_encoder():
    cache, encoder, data, keys = _filled()
    calls = encoder.calls
    expected = encoder.linear(data).detach()
    out = cache([keys[4], keys[0], keys[4]])
    torch.testing.assert_close(out, expected[[4, 0, 4]])
    torch.testing.assert_close(cache(torch.tensor([1, 2])), expected[[1, 2]])
    assert encoder.calls == calls
    assert cache.trainable is False and cache.embedding_size == encoder.embedding_size
    assert cache.cache_extract_meta([keys[3], keys[1]]) == [{"i": 3}, {"i": 1}]


def test_repeated_keys_do_not_shift_rows():
    encoder = CountingEncoder()
    cache = InMemoryCacheEncoder(encoder)
    data = torch.randn(4, 4)
    cache.fill_cache(["a", "b"], data[:2], [{}, {}])
    cache.fill_cache(
        ["b", "c", "a", "d"], torch.cat([data[1:2], data[2:3], data[0:1], data[3:]]), [{}] * 4
    )
    cache.finish_fill()
    expected = encoder.linear(data).detach()
    assert cache.cache.shape[0] == 4
    torch.testing.assert_close(cache(["a", "b", "c", "d"]), expected)


def test_fill_under_inference_mode_gives_ordinary_tensors():
    encoder = CountingEncoder()
    cache = InMemoryCacheEncoder(encoder)
    with torch.inference_mode():
        cache.fill_cache([1, 2], torch.randn(2, 4), [{}, {}])
        cache.finish_fill()
    assert not cache.cache.is_inference()
    weight = torch.ones(encoder.embedding_size, requires_grad=True)
    (cache([1, 2]) * weight).sum().backward()
    assert weight.grad is not None


def test_collate_and_meta_in_fill_and_train_modes():
    cache, encoder, data, keys = _filled()
    objects = [data[0], data[1]]
    collated_keys, collated = cache.get_collate_fn()((["x", "y"], objects))
    assert collated_keys == ["x", "y"]
    torch.testing.assert_close(collated, stack_collate(objects))
    assert cache.get_collate_fn()(["x"]) == ["x"]
    assert cache.get_meta_extractor()((["x", "y"], objects)) == [{}, {}]


def test_unknown_key_error_is_clear():
    cache, *_ = _filled()
    with pytest.raises(KeyError, match="not in the cache"):
        cache(["missing"])


def test_save_load_round_trip_weights_only(tmp_path):
    cache, encoder, data, keys = _filled(CacheType.CPU)
    path = os.path.join(tmp_path, "enc")
    cache.save_cache(path)
    state = torch.load(path, weights_only=True)
    assert set(state) == {"embeddings", "offsets", "meta", "output_dtype"}
    fresh = InMemoryCacheEncoder(CountingEncoder(), CacheType.CPU)
    fresh.load_cache(path)
    torch.testing.assert_close(fresh(keys), cache(keys))
    assert fresh.cache_extract_meta(keys) == cache.cache_extract_meta(keys)
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]


def test_reset_and_load_unsupported():
    cache, *_ = _filled()
    assert cache.is_filled()
    cache.reset_cache()
    assert not cache.is_filled() and cache.offset_map == {}
    with pytest.raises(ValueError, match="does not support loading"):
        InMemoryCacheEncoder.load("anywhere")
    assert isinstance(cache, CacheEncoder)
    assert cache.cache_type is CacheType.AUTO


def test_save_delegates_to_wrapped_encoder(tmp_path):
    cache, encoder, *_ = _filled()
    cache.save(str(tmp_path))
    loaded = CountingEncoder.load(str(tmp_path))
    torch.testing.assert_close(loaded.linear.weight, encoder.linear.weight)


def test_collate_fn_pickles_without_the_cache():
    import pickle

    cache, _, data, _ = _filled(n=50)
    payload = pickle.dumps(cache.get_collate_fn())
    assert len(payload) < 1000
    keys, collated = pickle.loads(payload)((["a"], [data[0]]))
    assert keys == ["a"] and collated.shape == (1, 4)
