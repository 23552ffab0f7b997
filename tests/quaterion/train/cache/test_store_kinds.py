"""A storage kind added from outside the package: one store class and one ``STORES`` entry."""

import json

import pytest
import torch

from quaterion.mining import CacheMismatchError, read_cached_embeddings
from quaterion.train.cache import STORES, CacheConfig, DiskStore, InMemoryStore
from tests.quaterion.train.helpers import CountingEncoder, Model, fit_data, fit_losses


class Float64Store(InMemoryStore):
    """Toy storage kind: rows kept on the host in float64, whatever the encoder gives;
    counts the batches it serves."""

    served = 0

    def append_rows(self, rows: torch.Tensor) -> None:
        super().append_rows(rows.cpu().double())

    def forward(self, batch) -> torch.Tensor:
        Float64Store.served += 1
        return super().forward(batch)


def _fit(cache_config):
    encoder = CountingEncoder()
    model = Model(encoders={"default": encoder}, cache_config=cache_config)
    data, loaders = fit_data()
    return fit_losses(model, *loaders, max_epochs=2), encoder, data


def test_a_new_storage_kind_is_one_mapping_entry_and_trains(monkeypatch):
    monkeypatch.setitem(STORES, "float64", Float64Store)
    Float64Store.served = 0
    losses, encoder, (train, val) = _fit(CacheConfig(cache_type="float64"))
    plain_losses, _, _ = _fit(None)
    assert encoder.calls == len(train) + len(val)  # each object encoded once, by the fill
    assert Float64Store.served >= len(losses) > 0  # every step's vectors came from the toy
    torch.testing.assert_close(losses, plain_losses)


def test_an_unknown_storage_kind_names_the_known_ones():
    with pytest.raises(
        ValueError, match=r"STORES \('none', 'auto', 'cpu', 'gpu', 'disk'\), got 'float64'"
    ):
        CacheConfig(cache_type="float64")


def test_a_persisted_cache_of_a_new_kind_is_read_back_by_that_kind(tmp_path, monkeypatch):
    monkeypatch.setitem(STORES, "float64", Float64Store)
    encoder = CountingEncoder()
    config = CacheConfig(cache_type="float64", save_dir=str(tmp_path))
    model = Model(encoders={"default": encoder}, cache_config=config)
    (train, _), loaders = fit_data()
    fit_losses(model, *loaders, max_epochs=1)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["encoders"]["default"]["fingerprint"]["store"] == "float64"

    calls, Float64Store.served = encoder.calls, 0
    cached = read_cached_embeddings(tmp_path, model)
    assert encoder.calls == calls and Float64Store.served > 0  # rows read by the toy kind
    fresh = model.model.encode([s.obj for s in train.samples], to_numpy=False)
    torch.testing.assert_close(cached.vectors, fresh, rtol=1e-6, atol=1e-6)

    monkeypatch.delitem(STORES, "float64")
    with pytest.raises(CacheMismatchError, match=r"storage kind 'float64'.*STORES\['float64'\]"):
        read_cached_embeddings(tmp_path, model)


def test_built_in_kinds_record_no_store_name(tmp_path):
    config = CacheConfig(cache_type="cpu", save_dir=str(tmp_path))
    model = Model(encoders={"default": CountingEncoder()}, cache_config=config)
    fit_losses(model, *fit_data()[1], max_epochs=1)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert (
        "store" not in manifest["encoders"]["default"]["fingerprint"]
    )  # saved caches keep their format


class NegatedStore(InMemoryStore):
    """Toy storage kind with a file format of its own: it keeps and saves the negated rows,
    and negates them back when serving."""

    def append_rows(self, rows: torch.Tensor) -> None:
        super().append_rows(-rows)

    def forward(self, batch) -> torch.Tensor:
        return -super().forward(batch)


def test_a_cache_saved_by_a_new_kind_is_not_loaded_by_a_built_in_kind(tmp_path, monkeypatch):
    """The saved manifest names the kind; a run with another kind must fill again, not read
    the other kind's rows as its own."""
    monkeypatch.setitem(STORES, "negated", NegatedStore)
    first = Model(
        encoders={"default": CountingEncoder()},
        cache_config=CacheConfig(cache_type="negated", save_dir=str(tmp_path)),
    )
    fit_losses(first, *fit_data()[1], max_epochs=1)
    encoder = CountingEncoder()
    config = CacheConfig(cache_type="cpu", save_dir=str(tmp_path))
    model = Model(encoders={"default": encoder}, cache_config=config)
    losses = fit_losses(model, *fit_data()[1], max_epochs=2)
    (train, val), _ = fit_data()
    assert encoder.calls == len(train) + len(val)  # filled again by the cpu kind
    plain_losses, _, _ = _fit(None)
    torch.testing.assert_close(losses, plain_losses)


def _forgetful_kinds():
    from quaterion.train.cache import CacheStore

    class Bare(CacheStore):  # no __init__ matching from_config, nothing implemented
        pass

    class Partial(CacheStore):
        def __init__(self, encoder, cache_type, dtype, name):
            super().__init__(encoder)

        def forward(self, batch):
            return batch

    return Bare, Partial


@pytest.mark.parametrize("which", [0, 1])
def test_a_storage_kind_that_forgets_methods_is_named_with_them(which, monkeypatch):
    kind = _forgetful_kinds()[which]
    monkeypatch.setitem(STORES, "forgetful", kind)
    model = Model(
        encoders={"default": CountingEncoder()}, cache_config=CacheConfig(cache_type="forgetful")
    )
    expected = r"storage kind 'forgetful' \(.*\.(Bare|Partial)\) does not implement .*fill_cache"
    with pytest.raises(TypeError, match=expected) as raised:
        fit_losses(model, *fit_data()[1], max_epochs=1)
    message = str(raised.value)
    assert "rows_for_keys" in message and "state" in message
    assert ("__init__" in message) == (which == 0)
    assert ("forward" in message) == (which == 0)


class ShadowDiskStore(DiskStore):
    """A storage kind of its own that keeps its rows in a file beside the cache file, as
    the disk store does; counts the batches it serves."""

    served = 0

    def forward(self, batch) -> torch.Tensor:
        ShadowDiskStore.served += 1
        return super().forward(batch)


def test_a_subclass_of_the_disk_store_is_its_own_kind(tmp_path, monkeypatch):
    monkeypatch.setitem(STORES, "shadow-disk", ShadowDiskStore)
    config = CacheConfig(cache_type="shadow-disk", save_dir=str(tmp_path))
    model = Model(encoders={"default": CountingEncoder()}, cache_config=config)
    (train, _), loaders = fit_data()
    fit_losses(model, *loaders, max_epochs=1)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["encoders"]["default"]["fingerprint"]["store"] == "shadow-disk"
    ShadowDiskStore.served = 0
    cached = read_cached_embeddings(tmp_path, model)
    assert ShadowDiskStore.served > 0  # read back through the registered class
    fresh = model.model.encode([s.obj for s in train.samples], to_numpy=False)
    torch.testing.assert_close(cached.vectors, fresh, rtol=1e-6, atol=1e-6)


def test_damaged_rows_of_a_new_disk_kind_are_refused(tmp_path, monkeypatch):
    monkeypatch.setitem(STORES, "shadow-disk", ShadowDiskStore)
    encoder = CountingEncoder()
    config = CacheConfig(cache_type="shadow-disk", save_dir=str(tmp_path))
    model = Model(encoders={"default": encoder}, cache_config=config)
    fit_losses(model, *fit_data()[1], max_epochs=1)
    read_cached_embeddings(tmp_path, model)  # intact: read back
    path = tmp_path / "encoders" / "default.rows"
    with open(path, "r+b") as file:
        file.seek(path.stat().st_size - 4)
        file.write(b"\x00\x00\x80\x7f")  # the last value becomes inf
    with pytest.raises(CacheMismatchError, match="default.rows is truncated or corrupt"):
        read_cached_embeddings(tmp_path, model)
    calls = encoder.calls
    model = Model(encoders={"default": encoder}, cache_config=config)
    with pytest.warns(UserWarning, match="corrupt"):
        fit_losses(model, *fit_data()[1], max_epochs=1)
    (train, val), _ = fit_data()
    assert encoder.calls == calls + len(train) + len(val)  # filled again, not served damaged


def test_a_disk_kind_of_its_own_needs_a_save_dir(monkeypatch):
    """Checked by ``CacheConfig`` for every kind whose store has ``needs_save_dir``, and
    again when the encoder is wrapped (the kind registered after the config was made)."""
    need = r"'shadow-disk' \(ShadowDiskStore\) keeps its rows in files under save_dir.*\.\.\."
    monkeypatch.setitem(STORES, "shadow-disk", InMemoryStore)
    config = CacheConfig(mapping={"default": "shadow-disk"})  # in memory: no save_dir needed
    monkeypatch.setitem(STORES, "shadow-disk", ShadowDiskStore)
    for kwargs in ({"cache_type": "shadow-disk"}, {"mapping": {"other": "shadow-disk"}}):
        with pytest.raises(ValueError, match=need):
            CacheConfig(**kwargs)
    encoder = CountingEncoder()
    model = Model(encoders={"default": encoder}, cache_config=config)
    with pytest.raises(ValueError, match=need):
        fit_losses(model, *fit_data()[1], max_epochs=1)
    assert encoder.calls == 0
