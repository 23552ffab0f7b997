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
    assert type(train.collate_fn) is TrainCollator
    assert isinstance(val.collate_fn, CacheTrainCollator)  # not handed to the trainer
