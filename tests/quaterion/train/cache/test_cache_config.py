import pytest
import torch

from quaterion.train.cache import CacheConfig, CacheType


def test_defaults_and_positional_use():
    config = CacheConfig()
    assert config.cache_type is CacheType.AUTO
    assert config.mapping == {} and config.key_extractors == {}
    assert (config.batch_size, config.num_workers, config.save_dir) == (32, None, None)
    assert CacheConfig(CacheType.CPU, batch_size=256).cache_type is CacheType.CPU


def test_cache_type_formats_as_value():
    assert CacheType("gpu") is CacheType.GPU
    assert f"{CacheType.CPU}" == "cpu" and str(CacheType.NONE) == "none"
    assert CacheType.AUTO == "auto"
    assert CacheConfig(cache_type="cpu").cache_type is CacheType.CPU


def test_cache_type_none_without_mapping_is_rejected():
    with pytest.raises(ValueError, match="cache_type or mapping have to be set"):
        CacheConfig(cache_type=None)
    assert CacheConfig(cache_type=None, mapping={"a": CacheType.CPU}).mapping == {
        "a": CacheType.CPU
    }


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"cache_type": "ram"}, ValueError),
        ({"dtype": torch.int8}, ValueError),
        ({"mapping": {"a": "ram"}}, ValueError),
        ({"mapping": ["a"]}, TypeError),
        ({"key_extractors": 3}, TypeError),
        ({"batch_size": 0}, ValueError),
        ({"num_workers": -1}, ValueError),
        ({"save_dir": 123}, TypeError),
        ({"verify_content": "yes"}, TypeError),
        ({"verify_checksums": 1}, TypeError),
    ],
)
def test_bad_values_name_the_field(kwargs, error):
    field = next(iter(kwargs))
    with pytest.raises(error, match=field):
        CacheConfig(**kwargs)


def test_disk_needs_save_dir():
    with pytest.raises(ValueError, match="CacheType.DISK.*save_dir"):
        CacheConfig(cache_type=CacheType.DISK)
    with pytest.raises(ValueError, match="CacheType.DISK.*save_dir"):
        CacheConfig(mapping={"a": "disk"})
    assert CacheConfig(cache_type="disk", save_dir="x").cache_type is CacheType.DISK
