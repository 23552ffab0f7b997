"""Host stores (CPU, DISK) serve rows where the batch lives without copying indices back to
the host, and a cached training step makes no host synchronisation (counted on CPU with a
``TorchDispatchMode``; the ``meta`` device stands in for an accelerator)."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from quaterion.loss import TripletLoss
from quaterion.train.cache import CacheConfig, CacheType, DiskCacheEncoder, InMemoryCacheEncoder
from quaterion.train.cache.host_rows import HostRows, gather_to
from tests.quaterion.train.helpers import CountingEncoder, Model, fit_data, fit_losses

aten = torch.ops.aten
SYNCS = {
    aten._local_scalar_dense,
    aten.nonzero,
    aten.masked_select,
    aten._unique2,
    aten.unique_consecutive,
    aten.unique_dim,
    aten.repeat_interleave,
}


class HostTraffic(TorchDispatchMode):
    """Records ops that make the host wait for a device (``syncs``: ``.item()``, ``nonzero``,
    boolean indexing, ...) and copies from a non-CPU device to the host (``to_host``)."""

    def __init__(self):
        super().__init__()
        self.syncs, self.to_host = [], []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        packet = func.overloadpacket
        boolean = packet in (aten.index, aten.index_put, aten.index_put_) and any(
            t.dtype == torch.bool for t in inputs[1:]
        )
        if packet in SYNCS or boolean:
            self.syncs.append(str(func))
        outputs = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        if any(t.device.type != "cpu" for t in inputs) and any(
            t.device.type == "cpu" for t in outputs
        ):
            self.to_host.append(str(func))
        return out


def _filled(cache_type, tmp_path):
    encoder = CountingEncoder()
    if cache_type == CacheType.DISK:
        cache = DiskCacheEncoder(encoder, str(tmp_path), "default")
    else:
        cache = InMemoryCacheEncoder(encoder, cache_type)
    data = torch.randn(5, 4)
    cache.fill_cache(list(range(5)), data, [{}] * 5)
    cache.finish_fill()
    return cache, encoder.linear(data).detach()


@pytest.mark.parametrize("cache_type", [CacheType.CPU, CacheType.DISK])
def test_host_store_gathers_on_the_host_and_sends_only_rows(tmp_path, cache_type):
    cache, expected = _filled(cache_type, tmp_path)
    rows = torch.tensor([3, 0, 3])
    carried = cache.host_rows(rows)
    assert isinstance(carried, HostRows)
    torch.testing.assert_close(cache(carried), expected[[3, 0, 3]])
    moved = carried.to(torch.device("meta"))  # what Lightning's batch transfer calls
    assert moved.rows is rows and moved.device.type == "meta"
    with HostTraffic() as traffic:
        out = cache(moved)
    assert out.device.type == "meta" and out.shape == (3, expected.shape[1])
    assert traffic.syncs == [] and traffic.to_host == []


def test_device_store_keeps_plain_index_tensors(tmp_path):
    cache, expected = _filled(CacheType.AUTO, tmp_path)
    rows = torch.tensor([4, 1])
    assert cache.host_rows(rows) is rows  # moves with the batch, gathered on the device
    torch.testing.assert_close(cache(rows), expected[[4, 1]])
    with HostTraffic() as traffic:
        out = cache(rows.to("meta"))  # rows on another device: the store follows them once
    assert out.device.type == "meta" and cache.cache.device.type == "meta"
    assert traffic.syncs == [] and traffic.to_host == []


def test_gather_to_matches_indexing():
    store = torch.randn(7, 3)
    rows = torch.tensor([6, 2, 2])
    torch.testing.assert_close(gather_to(store, rows, torch.device("cpu")), store[rows])


class CountingModel(Model):
    """Records the host traffic of each ``training_step`` (cache gather, head, loss), where
    the issue's table counts it, and what carries the cached rows."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.steps, self.carried = [], []

    def training_step(self, batch, batch_idx):
        self.carried.append(type(batch[0]["data"]["default"]))
        with HostTraffic() as traffic:
            loss = super().training_step(batch, batch_idx)
        self.steps.append((traffic.syncs, traffic.to_host))
        return loss


@pytest.mark.parametrize("cache_type", [CacheType.CPU, CacheType.DISK])
def test_cached_training_steps_make_no_host_sync(tmp_path, cache_type):
    config = CacheConfig(cache_type=cache_type, save_dir=str(tmp_path))
    model = CountingModel(cache_config=config, loss=TripletLoss(mining="all"))
    losses = fit_losses(model, *fit_data()[1], max_epochs=2)
    assert len(model.steps) == len(losses) == 6
    assert set(model.carried) == {HostRows}
    assert model.steps == [([], [])] * 6
    uncached = fit_losses(Model(loss=TripletLoss(mining="all")), *fit_data()[1], max_epochs=2)
    torch.testing.assert_close(losses, uncached)
