"""Cache behaviour through TrainableModel.setup_cache and Quaterion.fit."""

import pytest
import pytorch_lightning as pl
import torch

from quaterion.train.cache import CacheConfig, CacheEncoder, CacheType, InMemoryCacheEncoder
from quaterion.train.cache._fingerprint import fill_loader
from quaterion.dataset.train_collator import TrainCollator
from quaterion.train.cache.cache_train_collator import CacheTrainCollator
from tests.quaterion.train import helpers
from tests.quaterion.train.helpers import CountingEncoder, Model, fit_data, fit_losses, trainer


def test_pair_loader_cache_batches_and_forward():
    encoder = CountingEncoder()
    model = Model(encoders={"default": encoder}, cache_config=CacheConfig(), pairs=True)
    loader = helpers.pair_loader(batch_size=3)
    reference = Model(encoders={"default": CountingEncoder()}, pairs=True)
    reference.setup_dataloader(loader)
    plain_batch = next(iter(loader))
    expected = reference.model(plain_batch[0])

    model.setup_dataloader(loader)
    assert model.setup_cache(trainer(), loader, None) is True
    cached = model.model.encoders["default"]
    assert isinstance(cached, InMemoryCacheEncoder) and cached.cache.shape[0] == 16
    features, labels = next(iter(loader))
    keys = features["data"]["default"]
    assert isinstance(keys, list) and len(keys) == 6 and all(isinstance(k, int) for k in keys)
    assert len(features["meta"]) == 6
    calls = encoder.calls
    torch.testing.assert_close(model.model(features), expected, atol=1e-4, rtol=1e-4)
    assert encoder.calls == calls
    assert torch.equal(labels["pairs"], plain_batch[1]["pairs"])


def _fit(cache, pairs=False, epochs=2, **trainer_kwargs):
    encoder = CountingEncoder()
    model = Model(encoders={"default": encoder}, cache_config=cache, pairs=pairs)
    data, loaders = fit_data(pairs)
    kwargs = dict(max_epochs=epochs, num_sanity_val_steps=2, **trainer_kwargs)
    return fit_losses(model, *loaders, **kwargs), encoder, data, model


@pytest.mark.parametrize("pairs", [False, True])
def test_full_cache_is_exact_and_runs_encoder_once_per_object(pairs):
    plain_losses, plain_encoder, _, plain_model = _fit(None, pairs)
    losses, encoder, (train, val), model = _fit(CacheConfig(batch_size=5), pairs)
    objects = 2 if pairs else 1
    assert encoder.calls == objects * (len(train) + len(val))
    assert max(encoder.batch_sizes) == 5 * objects  # fill batches follow CacheConfig.batch_size
    assert (train.reads, val.reads) == (len(train), len(val))  # only the fill read the data
    assert plain_encoder.calls > encoder.calls
    torch.testing.assert_close(losses, plain_losses)
    for name, value in plain_model.model.head.state_dict().items():
        torch.testing.assert_close(model.model.head.state_dict()[name], value)


def test_partial_cache_wraps_only_frozen_encoder_and_is_exact():
    def build(cache):
        torch.manual_seed(0)
        frozen, trainable = CountingEncoder(seed=1), CountingEncoder(trainable=True, seed=2)
        model = Model(encoders={"frozen": frozen, "trainable": trainable}, cache_config=cache)
        return model, frozen

    model, frozen = build(CacheConfig())
    loader = helpers.group_loader(shuffle=True)
    model.setup_dataloader(loader)
    fit = model.cache_loaders(trainer(), loader, None)
    assert isinstance(model.model.encoders["frozen"], CacheEncoder)
    assert not isinstance(model.model.encoders["trainable"], CacheEncoder)
    assert fit.cached and fit.train is loader  # the trainable encoder needs the raw objects
    assert not fit.served and not loader.full_cache_used
    model.unwrap_cache()

    results = []
    for cache in (None, CacheConfig()):
        model, frozen = build(cache)
        results.append(
            (fit_losses(model, helpers.group_loader(shuffle=True), max_epochs=2), frozen.calls)
        )
    torch.testing.assert_close(results[1][0], results[0][0])
    assert results[1][1] == 24 < results[0][1]


def test_wrapping_rules():
    frozen, trainable = CountingEncoder(), CountingEncoder(trainable=True)
    encoders = {"frozen": frozen, "trainable": trainable}
    with pytest.raises(ValueError, match="encoder trainable. Encoder must be frozen"):
        Model._apply_cache_config(encoders, CacheConfig(mapping={"trainable": CacheType.CPU}))
    none_mapped = Model._apply_cache_config(
        encoders, CacheConfig(mapping={"frozen": CacheType.NONE})
    )
    assert none_mapped["frozen"] is frozen
    disabled = Model._apply_cache_config(
        encoders, CacheConfig(cache_type=CacheType.NONE, mapping={"frozen": CacheType.CPU})
    )
    assert disabled["frozen"] is frozen
    only_mapped = Model._apply_cache_config(
        {"a": CountingEncoder(), "b": frozen}, CacheConfig(cache_type=None, mapping={"b": "cpu"})
    )
    assert not isinstance(only_mapped["a"], CacheEncoder)
    assert only_mapped["b"].cache_type is CacheType.CPU
    with pytest.warns(UserWarning, match=r"\['missing'\].*\['frozen', 'trainable'\]"):
        Model._apply_cache_config(encoders, CacheConfig(mapping={"missing": CacheType.CPU}))
    with pytest.raises(ValueError, match=r"key_extractors.*\['typo'\].*\['frozen', 'trainable'\]"):
        Model._apply_cache_config(encoders, CacheConfig(key_extractors={"typo": str}))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="`CacheType.GPU` has been chosen for `frozen`"):
            Model._apply_cache_config(encoders, CacheConfig(cache_type=CacheType.GPU))


def test_custom_key_extractor_runs_encoder_once_per_key():
    base = helpers.group_samples(n=6)
    samples = base + [type(s)(obj=s.obj.clone(), group=s.group) for s in base]  # duplicates
    encoder = CountingEncoder()
    config = CacheConfig(key_extractors=lambda obj: tuple(round(v, 5) for v in obj.tolist()))
    model = Model(encoders={"default": encoder}, cache_config=config)
    loader = helpers.group_loader(samples, shuffle=True)
    losses = fit_losses(model, loader, max_epochs=2)
    assert encoder.calls == 6
    assert len(losses) == 4


def test_fill_workers_keep_labels():
    """CacheConfig(num_workers>0) on a 0-worker loader: no full cache, training still works."""
    encoder = CountingEncoder()
    model = Model(encoders={"default": encoder}, cache_config=CacheConfig(num_workers=2))
    loader = helpers.group_loader(shuffle=True)
    assert len(fit_losses(model, loader)) == 3 and encoder.calls == 24


class ShardedSamples(torch.utils.data.IterableDataset):
    """Group samples shared out among the loader's workers (each worker reads its own)."""

    def __init__(self, samples):
        self.samples = samples

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        return iter(self.samples if info is None else self.samples[info.id :: info.num_workers])


@pytest.mark.parametrize("loader_workers, fill_workers", [(2, 0), (0, 2)])
def test_an_iterable_dataset_is_filled_by_the_loaders_own_workers(loader_workers, fill_workers):
    """The id of an iterable dataset's item is its (worker, position): the fill reads it with
    the loader's workers, whatever CacheConfig.num_workers says, or keys would not match."""
    samples = helpers.group_samples(n=24)
    loader = helpers.group_loader(ShardedSamples(samples), num_workers=loader_workers)
    uncached = fit_losses(Model(), loader)
    encoder = CountingEncoder()
    model = Model(encoders={"default": encoder}, cache_config=CacheConfig(num_workers=fill_workers))
    loader = helpers.group_loader(ShardedSamples(samples), num_workers=loader_workers)
    torch.testing.assert_close(fit_losses(model, loader), uncached)
    assert encoder.calls == 24


def test_state_dict_keys_do_not_change_with_cache():
    model = Model(encoders={"default": CountingEncoder()}, cache_config=CacheConfig())
    keys = list(model.state_dict())
    loader = helpers.group_loader()
    model.setup_dataloader(loader)
    model.setup_cache(trainer(), loader, None)
    assert isinstance(model.model.encoders["default"], CacheEncoder)
    assert list(model.state_dict()) == keys
    assert any(k.startswith("_model.default.") for k in keys)
    assert any(k.startswith("_model.head.") for k in keys)


def test_fill_loader_follows_cache_config():
    loader = helpers.group_loader(shuffle=True, drop_last=True, num_workers=0)
    fill = fill_loader(loader, CacheConfig(batch_size=7, num_workers=2))
    assert (fill.batch_size, fill.num_workers, fill.drop_last) == (7, 2, False)
    assert isinstance(fill.sampler, torch.utils.data.SequentialSampler)
    assert fill.dataset is loader.dataset and fill.collate_fn is loader.collate_fn
    inherit = fill_loader(loader, CacheConfig(batch_size=5))
    assert (inherit.batch_size, inherit.num_workers) == (5, 0)


def _doubling_pre_collate(batch):
    """Custom loader collate_fn: the class pre-collate with every object doubled."""
    from quaterion.dataset import GroupSimilarityDataLoader

    ids, features, labels = GroupSimilarityDataLoader.pre_collate_fn(batch)
    return ids, [2 * obj for obj in features], labels


def test_cache_uses_the_loaders_own_pre_collate():
    encoder = CountingEncoder()
    model = Model(encoders={"default": encoder}, cache_config=CacheConfig(num_workers=0))
    # a custom collate_fn may read objects: no full cache (the data stays readable), and it
    # is what the fill and the training batches go through
    loader = helpers.group_loader(collate_fn=_doubling_pre_collate)
    model.setup_dataloader(loader)
    fit = model.cache_loaders(trainer(), loader, None)
    assert fit.cached and fit.train is loader and not fit.served
    features, labels = next(iter(loader))
    samples = helpers.group_samples()
    expected = encoder.linear(2 * torch.stack([s.obj for s in samples[:8]])).detach()
    torch.testing.assert_close(
        model.model.encoders["default"](features["data"]["default"]), expected
    )
    assert labels["groups"].tolist() == [s.group for s in samples[:8]]


def test_fill_that_happened_elsewhere_is_a_clear_error():
    """A strategy that fills in spawned processes leaves this process's cache empty."""

    class SpawningTrainer:
        world_size = 2
        global_rank = 0  # the launching process, as a real Trainer reports it
        local_rank = 0
        strategy = None  # like ddp_spawn: no process group in this process before the fill

        def predict(self, *args, **kwargs):  # the work happens in other processes
            return None

    model = Model(cache_config=CacheConfig())
    loader = helpers.group_loader()
    model.setup_dataloader(loader)
    with pytest.raises(RuntimeError, match="strategy='ddp'"):
        model.setup_cache(SpawningTrainer(), loader, None)


class _FullCacheFlag(pl.Callback):
    """``train_dataloader.full_cache_used`` at every training step."""

    def __init__(self, loader):
        self.loader = loader
        self.flags = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.flags.append(self.loader.full_cache_used)


@pytest.mark.parametrize("cache, expected", [(CacheConfig(), True), (None, False)])
def test_full_cache_used_while_a_fully_cached_fit_serves_the_loader(cache, expected):
    loader = helpers.group_loader(shuffle=True)
    flag = _FullCacheFlag(loader)
    model = Model(encoders={"default": CountingEncoder()}, cache_config=cache)
    assert loader.full_cache_used is False
    assert len(fit_losses(model, loader, callbacks=[flag], max_epochs=2)) == 6
    assert flag.flags == [expected] * 6
    assert loader.full_cache_used is False  # the loader is plain again after the fit


def test_cached_fit_draws_the_same_shuffles_from_a_loader_generator():
    def losses(cache):
        generator = torch.Generator().manual_seed(3)
        loader = helpers.group_loader(shuffle=True, generator=generator)
        model = Model(encoders={"default": CountingEncoder()}, cache_config=cache)
        return fit_losses(model, loader, max_epochs=3)

    torch.testing.assert_close(losses(CacheConfig()), losses(None))


class _SetUpCountingModel(Model):
    """``Model`` recording the loaders handed to ``setup_dataloader``."""

    def __init__(self, **kwargs):
        self.set_up = []
        super().__init__(**kwargs)

    def setup_dataloader(self, dataloader):
        self.set_up.append(dataloader)
        super().setup_dataloader(dataloader)


@pytest.mark.parametrize("cache", [None, CacheConfig()])
def test_cache_set_up_hands_every_loader_to_setup_dataloader_once(cache):
    """Every loader gets the model's own (overridable) plain collate, once, before the cache
    set-up; with nothing cached it keeps it, a cache replaces it by the cache collator."""
    model = _SetUpCountingModel(cache_config=cache)
    train, val = helpers.group_loader(), helpers.group_loader()
    fit = model.cache_loaders(trainer(), train, val)
    assert fit.cached is (cache is not None)
    assert model.set_up == [train, val]
    if cache is None:
        assert (fit.train, fit.val) == (train, val)
        assert all(type(dl.collate_fn) is TrainCollator for dl in (train, val))
    else:
        assert isinstance(val.collate_fn, CacheTrainCollator)
    model.unwrap_cache()


@pytest.mark.parametrize("cache", [None, CacheConfig()])
def test_fit_calls_setup_dataloader_on_both_loaders_before_the_cache(cache):
    """The spec's ``Quaterion.fit`` order: a user's ``setup_dataloader`` override sees the
    training and validation loaders in a cached fit too, before the cache set-up (which
    then installs its own collator on the loaders it serves)."""
    model = _SetUpCountingModel(cache_config=cache)
    train, val = helpers.group_loader(), helpers.group_loader()
    seen = []

    class BeforeFit(pl.Callback):
        def on_fit_start(self, trainer, pl_module):
            seen.extend(pl_module.set_up)

    fit_losses(model, train, val, callbacks=[BeforeFit()], max_epochs=1)
    assert seen[:2] == [train, val]


def test_setup_cache_alone_prepares_fresh_loaders_for_a_plain_fit():
    """The spec's public path without ``Quaterion.fit``: ``setup_cache`` on loaders nobody
    set up, nothing cached, then ``trainer.fit``: the loaders carry the model's plain collate
    (the batches of a loader set up by ``setup_dataloader``) and the fit trains."""
    model = _SetUpCountingModel(cache_config=None)
    train = helpers.group_loader()
    assert model.setup_cache(trainer(), train, None) is False
    assert model.set_up == [train]
    reference_loader = helpers.group_loader()
    Model().setup_dataloader(reference_loader)
    (features, labels), (expected, expected_labels) = (
        next(iter(train)),
        next(iter(reference_loader)),
    )
    torch.testing.assert_close(features["data"]["default"], expected["data"]["default"])
    torch.testing.assert_close(labels["groups"], expected_labels["groups"])
    before = [p.detach().clone() for p in model.parameters()]
    trainer().fit(model, train)
    moved = max((p.detach() - b).abs().max().item() for p, b in zip(model.parameters(), before))
    assert moved > 1e-6


def test_a_failing_setup_dataloader_leaves_nothing_for_unwrap_cache(tmp_path):
    """An override of ``setup_dataloader`` that raises stops the set-up before any loader
    is recorded: ``save_servable`` (through ``unwrap_cache``) does not call it again."""

    class Failing(Model):
        def setup_dataloader(self, dataloader):
            raise RuntimeError("bad loader")

    model = Failing(cache_config=CacheConfig())
    with pytest.raises(RuntimeError, match="bad loader"):
        model.cache_loaders(trainer(), helpers.group_loader(), None)
    assert not isinstance(model.model.encoders["default"], CacheEncoder)
    model.save_servable(str(tmp_path / "servable"))
    assert (tmp_path / "servable" / "config.json").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        ((None, None), "train_dataloader must be a SimilarityDataLoader.*NoneType"),
        ((helpers.group_samples(), None), "must be a SimilarityDataLoader.*list"),
        (
            (torch.utils.data.DataLoader(helpers.group_samples()), None),
            "must be a SimilarityDataLoader.*DataLoader",
        ),
        (("loader", "val"), "must be a SimilarityDataLoader.*str"),
    ],
)
def test_cache_set_up_refuses_what_is_not_a_similarity_loader(args, message):
    train, val = args
    train = helpers.group_loader() if train == "loader" else train
    model = Model(cache_config=CacheConfig(CacheType.CPU))
    for set_up in (model.setup_cache, model.cache_loaders):
        with pytest.raises(TypeError, match=message):
            set_up(trainer(), train, val)
        assert not isinstance(model.model.encoders["default"], CacheEncoder)


def test_cache_set_up_needs_a_trainer():
    model = Model(cache_config=CacheConfig(CacheType.CPU))
    with pytest.raises(TypeError, match="trainer must be a pytorch_lightning.Trainer.*NoneType"):
        model.setup_cache(None, helpers.group_loader(), None)
