"""CacheType.DISK (memory-mapped rows under save_dir) and half-precision rows."""

import os

import pytest
import torch

from quaterion.train.cache import CacheConfig, CacheType, DiskCacheEncoder
from quaterion.train.cache._checksum import file_sha256, rows_sha256
from tests.quaterion.train.cache.saved import rewrite_manifest
from tests.quaterion.train.helpers import (
    EMB_DIM,
    CountingEncoder,
    Model,
    StoreRecorder,
    fit_data,
    fit_losses,
)


def _fit(config, pairs=False, keep=None):
    encoder = CountingEncoder()
    model = Model(encoders={"default": encoder}, cache_config=config, pairs=pairs)
    store = StoreRecorder()
    losses = fit_losses(model, *fit_data(pairs)[1], callbacks=[store], max_epochs=2)
    if keep is not None:
        keep.append(store.stores["default"])
    return encoder, losses


@pytest.mark.parametrize("pairs", [False, True])
def test_disk_store_is_bit_identical_to_memory(tmp_path, pairs):
    memory, disk = [], []
    _, memory_losses = _fit(CacheConfig(cache_type=CacheType.CPU), pairs, memory)
    encoder, disk_losses = _fit(
        CacheConfig(cache_type=CacheType.DISK, save_dir=str(tmp_path)), pairs, disk
    )
    (_, memory_keys, memory_rows), (kind, disk_keys, disk_rows) = memory[0], disk[0]
    assert kind is DiskCacheEncoder and disk_keys == memory_keys
    assert torch.equal(disk_rows, memory_rows)
    assert torch.equal(disk_losses, memory_losses)
    rows_file = os.path.join(tmp_path, "encoders", "default.rows")
    assert os.path.getsize(rows_file) == memory_rows.numel() * 4
    config = CacheConfig(cache_type=CacheType.DISK, save_dir=str(tmp_path))
    again, again_losses = _fit(config, pairs)
    assert torch.equal(again_losses, memory_losses)
    assert again.calls == 0 and encoder.calls > 0


def test_truncated_rows_file_is_rebuilt(tmp_path):
    config = CacheConfig(cache_type=CacheType.DISK, save_dir=str(tmp_path))
    _, losses = _fit(config)
    path = os.path.join(tmp_path, "encoders", "default.rows")
    with open(path, "r+b") as file:
        file.truncate(os.path.getsize(path) - 8)
    with pytest.warns(UserWarning, match="truncated or corrupt"):
        encoder, rebuilt = _fit(config)
    assert encoder.calls == 32
    torch.testing.assert_close(rebuilt, losses)


@pytest.mark.parametrize("cache_type", [CacheType.CPU, CacheType.DISK])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_rows(tmp_path, cache_type, dtype):
    full, half = [], []
    _fit(CacheConfig(cache_type=CacheType.CPU), keep=full)
    config = CacheConfig(cache_type=cache_type, dtype=dtype, save_dir=str(tmp_path))
    _, losses = _fit(config, keep=half)
    assert half[0][2].dtype == dtype
    assert torch.equal(half[0][2], full[0][2].to(dtype))  # the encoder's rows, rounded
    assert losses.dtype == torch.float32 and torch.isfinite(losses).all()
    with pytest.warns(UserWarning, match="stored differently"):
        encoder, _ = _fit(CacheConfig(cache_type=cache_type, save_dir=str(tmp_path)))
    assert encoder.calls == 32


def _swap_first_rows(path, row_bytes):
    with open(path, "r+b") as file:
        first, second = file.read(row_bytes), file.read(row_bytes)
        assert first != second
        file.seek(0)
        file.write(second + first)


def test_swapped_rows_fail_the_checksum_and_are_rebuilt(tmp_path):
    config = CacheConfig(cache_type=CacheType.DISK, save_dir=str(tmp_path))
    _, losses = _fit(config)
    rows = os.path.join(tmp_path, "encoders", "default.rows")
    size = os.path.getsize(rows)
    _swap_first_rows(rows, EMB_DIM * 4)
    assert os.path.getsize(rows) == size  # the size check alone cannot see it
    with pytest.warns(UserWarning, match=r"encoders/default.rows is truncated or corrupt"):
        encoder, rebuilt = _fit(config)
    assert encoder.calls == 32
    torch.testing.assert_close(rebuilt, losses)


def test_checksums_can_be_turned_off(tmp_path):
    config = CacheConfig(cache_type=CacheType.DISK, save_dir=str(tmp_path))
    stores = []
    _fit(config, keep=stores)
    _swap_first_rows(os.path.join(tmp_path, "encoders", "default.rows"), EMB_DIM * 4)
    unchecked = CacheConfig(
        cache_type=CacheType.DISK, save_dir=str(tmp_path), verify_checksums=False
    )
    encoder, _ = _fit(unchecked, keep=stores)
    assert encoder.calls == 0  # the documented opt-out: what is on disk is used
    torch.testing.assert_close(stores[1][2][[1, 0]], stores[0][2][:2])
    with pytest.raises(TypeError, match="verify_checksums.* must be True or False"):
        CacheConfig(save_dir=str(tmp_path), verify_checksums="false")


def test_forged_dtype_with_a_matching_file_checksum_is_not_read(tmp_path):
    """The rows' dtype rewritten in the store file and its checksum in the manifest: the
    rows are not read as int32 bits, the cache is rebuilt."""
    config = CacheConfig(cache_type=CacheType.DISK, save_dir=str(tmp_path))
    _, losses = _fit(config)
    path = os.path.join(tmp_path, "encoders", "default")
    state = torch.load(path, weights_only=True)
    state["rows"]["dtype"] = "int32"
    torch.save(state, path)  # through the link, into the generation
    checksum = file_sha256(path)
    rewrite_manifest(tmp_path, lambda m: m["encoders"]["default"].update(file_sha256=checksum))
    with pytest.warns(UserWarning, match="rows dtype 'int32' is not a floating dtype"):
        encoder, rebuilt = _fit(config)
    assert encoder.calls == 32
    torch.testing.assert_close(rebuilt, losses)


def test_checksum_binds_dtype_and_shape_to_the_bytes():
    digest = "ab" * 32
    same = rows_sha256(torch.float32, (4, 6), digest)
    assert same == rows_sha256(torch.float32, [4, 6], digest)
    assert same != rows_sha256(torch.bfloat16, (8, 6), digest)
    assert same != rows_sha256(torch.float32, (6, 4), digest)
