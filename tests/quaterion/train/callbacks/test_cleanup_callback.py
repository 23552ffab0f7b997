import pytest
import torch

from quaterion import Quaterion
from quaterion.dataset.train_collator import TrainCollator
from quaterion.train.cache import CacheConfig, CacheEncoder
from quaterion.train.cache.cache_train_collator import CacheTrainCollator
from quaterion.train.callbacks import CleanupCallback
from tests.quaterion.train.helpers import Model, group_loader, trainer


class _FakeTrainer:
    def __init__(self, train, val):
        self.train_dataloader = train
        self.val_dataloaders = val


def _cached_setup():
    model = Model(cache_config=CacheConfig())
    train, val = group_loader(), group_loader()
    for loader in (train, val):
        model.setup_dataloader(loader)
    fit = model.cache_loaders(trainer(), train, val)
    assert isinstance(model.model.encoders["default"], CacheEncoder)
    assert isinstance(train.collate_fn, CacheTrainCollator)
    assert fit.train is not train and fit.val is not val and fit.served
    assert train.full_cache_used and val.full_cache_used
    return model, train, val


def test_teardown_fit_unwraps_and_restores_loaders():
    model, train, val = _cached_setup()
    CleanupCallback().teardown(_FakeTrainer(train, [val, "not a loader"]), model, "fit")
    assert not isinstance(model.model.encoders["default"], CacheEncoder)
    for loader in (train, val):
        assert type(loader.collate_fn) is TrainCollator
        assert loader.full_cache_used is False
        features, _ = next(iter(loader))
        assert features["data"]["default"].shape == (8, 4)


def test_teardown_other_stages_do_nothing():
    model, train, val = _cached_setup()
    CleanupCallback().teardown(_FakeTrainer({"a": train}, None), model, "predict")
    assert isinstance(model.model.encoders["default"], CacheEncoder)
    CleanupCallback().teardown(_FakeTrainer({"a": train}, None), model, "fit")
    for loader in (train, val):  # val was set up by the cache too: restored as well
        assert type(loader.collate_fn) is TrainCollator and loader.full_cache_used is False


class _CountingModel(Model):
    """``Model`` counting ``unwrap_cache`` calls and failing where asked."""

    def __init__(self, fail_step: bool = False, **kwargs):
        self.unwraps = 0
        self.fail_step = fail_step
        super().__init__(**kwargs)

    def unwrap_cache(self):
        self.unwraps += 1
        super().unwrap_cache()

    def training_step(self, batch, batch_idx):
        if self.fail_step:
            raise RuntimeError("step failed")
        return super().training_step(batch, batch_idx)


def _assert_plain(model, *loaders):
    assert not isinstance(model.model.encoders["default"], CacheEncoder)
    for loader in loaders:
        assert type(loader.collate_fn) is TrainCollator and loader.full_cache_used is False


@pytest.mark.parametrize("fail_step", [False, True])
def test_quaterion_fit_cleans_up_exactly_once(fail_step):
    model = _CountingModel(fail_step=fail_step, cache_config=CacheConfig())
    train, val = group_loader(), group_loader()
    if fail_step:
        with pytest.raises(RuntimeError, match="step failed"):
            Quaterion.fit(model, trainer(), train, val)
    else:
        Quaterion.fit(model, trainer(), train, val)
    assert model.unwraps == 1
    _assert_plain(model, train, val)


def test_a_failed_cache_set_up_cleans_up_exactly_once():
    model = _CountingModel(cache_config=CacheConfig())
    train, val = group_loader(), group_loader()

    class Broken(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, index):
            raise OSError("unreadable")

    val = group_loader(Broken())
    with pytest.raises(OSError, match="unreadable"):
        Quaterion.fit(model, trainer(), train, val)
    assert model.unwraps == 1
    _assert_plain(model, train, val)


def test_trainer_fit_after_setup_cache_is_cleaned_up_by_the_callback():
    model = _CountingModel(cache_config=CacheConfig())
    train = group_loader()
    model.setup_dataloader(train)
    assert model.setup_cache(trainer(), train, None)
    assert isinstance(train.collate_fn, CacheTrainCollator)
    trainer(callbacks=[CleanupCallback()]).fit(model, train)
    assert model.unwraps == 1
    _assert_plain(model, train)
