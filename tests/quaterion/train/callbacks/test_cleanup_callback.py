from quaterion.dataset.train_collator import TrainCollator
from quaterion.train.cache import CacheConfig, CacheEncoder
from quaterion.train.cache._batches import cached_loader
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
    model.setup_cache(trainer(), train, val)
    assert isinstance(model.model.encoders["default"], CacheEncoder)
    assert isinstance(train.collate_fn, CacheTrainCollator)
    assert cached_loader(train) is not None and cached_loader(val) is not None
    return model, train, val


def test_teardown_fit_unwraps_and_restores_loaders():
    model, train, val = _cached_setup()
    CleanupCallback().teardown(_FakeTrainer(train, [val, "not a loader"]), model, "fit")
    assert not isinstance(model.model.encoders["default"], CacheEncoder)
    for loader in (train, val):
        assert type(loader.collate_fn) is TrainCollator
        assert cached_loader(loader) is None
        features, _ = next(iter(loader))
        assert features["data"]["default"].shape == (8, 4)


def test_teardown_other_stages_do_nothing():
    model, train, val = _cached_setup()
    CleanupCallback().teardown(_FakeTrainer({"a": train}, None), model, "predict")
    assert isinstance(model.model.encoders["default"], CacheEncoder)
    CleanupCallback().teardown(_FakeTrainer({"a": train}, None), model, "fit")
    assert type(train.collate_fn) is TrainCollator
    assert isinstance(val.collate_fn, CacheTrainCollator)  # not handed to the trainer
