"""A storage kind added from outside the package: one store class and one ``STORES`` entry."""

import pytest
import torch

from quaterion.train.cache import STORES, CacheConfig, InMemoryStore
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
