"""Quaterion.fit / evaluate / trainer_defaults."""

import importlib
import os
import warnings

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint, RichModelSummary
from pytorch_lightning.loggers import CSVLogger

from quaterion import Quaterion, TrainableModel
from quaterion.eval.attached_metric import AttachedMetric
from quaterion.eval.group import RetrievalRPrecision
from quaterion.loss import ContrastiveLoss, TripletLoss
from quaterion.train.cache import CacheConfig, CacheEncoder
from quaterion.train.callbacks import CleanupCallback, MetricsCallback
from quaterion.utils.enums import TrainStage
from quaterion.utils.progress_bar import QuaterionProgressBar
from quaterion_models import SimilarityModel
from quaterion_models.encoders import SwitchEncoder
from quaterion_models.heads import GatedHead, SwitchHead
from tests.quaterion.train.helpers import (
    CountingEncoder,
    LossRecorder,
    Model,
    group_loader,
    group_samples,
    naive_r_precision_counts,
    pair_loader,
    trainer,
)

IMPORT_PATHS = {
    "quaterion": ["Quaterion", "TrainableModel"],
    "quaterion.main": ["Quaterion"],
    "quaterion.train.trainable_model": ["TrainableModel"],
    "quaterion.train.cache": ["CacheConfig", "CacheType", "CacheEncoder", "InMemoryCacheEncoder"],
    "quaterion.train.cache.cache_config": ["CacheConfig", "CacheType", "KeyExtractorType"],
    "quaterion.train.cache.cache_encoder": [
        "CacheEncoder",
        "CacheMode",
        "CacheCollateReturnType",
        "KeyExtractorType",
    ],
    "quaterion.train.cache.in_memory_cache_encoder": ["InMemoryCacheEncoder"],
    "quaterion.train.cache.cache_model": ["CacheModel"],
    "quaterion.train.cache.cache_train_collator": ["CacheTrainCollator"],
    "quaterion.train.cache_mixin": ["CacheMixin"],
    "quaterion.train.xbm": ["XbmConfig", "XbmDevice"],
    "quaterion.train.xbm.xbm_config": ["XbmConfig", "XbmDevice"],
    "quaterion.train.xbm.xbm_buffer": ["XbmBuffer"],
    "quaterion.train.callbacks": ["CleanupCallback", "MetricsCallback"],
    "quaterion.train.callbacks.cleanup_callback": ["CleanupCallback"],
    "quaterion.train.callbacks.metrics_callback": ["MetricsCallback"],
    "quaterion.utils.enums": ["TrainStage"],
    "quaterion.utils.progress_bar": ["QuaterionProgressBar", "FixedLengthProcessionSpeed"],
}


@pytest.mark.parametrize("module", sorted(IMPORT_PATHS))
def test_import_paths(module):
    imported = importlib.import_module(module)
    for name in IMPORT_PATHS[module]:
        assert hasattr(imported, name), f"{module}.{name}"


def test_train_stage_formats_as_value():
    assert f"{TrainStage.TRAIN}_loss" == "train_loss"
    assert f"{TrainStage.VALIDATION}" == "validation"
    assert str(TrainStage.TEST) == "test" and TrainStage.TRAIN == "train"


def test_trainer_defaults_without_arguments():
    first, second = Quaterion.trainer_defaults(), Quaterion.trainer_defaults()
    assert set(first) == {
        "callbacks",
        "accelerator",
        "devices",
        "max_epochs",
        "enable_model_summary",
    }
    assert (first["accelerator"], first["devices"], first["max_epochs"]) == ("auto", 1, -1)
    assert first["enable_model_summary"] is False
    bar, stopping, summary = first["callbacks"]
    assert isinstance(bar, QuaterionProgressBar) and isinstance(summary, RichModelSummary)
    assert isinstance(stopping, EarlyStopping) and stopping.monitor == "validation_loss"
    assert stopping.mode == "min" and stopping.patience == 3 and stopping.strict
    assert first["callbacks"] is not second["callbacks"]
    assert all(a is not b for a, b in zip(first["callbacks"], second["callbacks"]))


def test_trainer_defaults_with_loader_and_model():
    defaults = Quaterion.trainer_defaults(train_dataloader=group_loader(batch_size=8))
    assert defaults["log_every_n_steps"] == 3
    frozen_cached = Model(cache_config=CacheConfig())
    assert (
        Quaterion.trainer_defaults(trainable_model=frozen_cached)["enable_checkpointing"] is False
    )
    assert "enable_checkpointing" not in Quaterion.trainer_defaults(trainable_model=Model())
    mixed = Model(
        encoders={"a": CountingEncoder(), "b": CountingEncoder(trainable=True)},
        cache_config=CacheConfig(),
    )
    assert "enable_checkpointing" not in Quaterion.trainer_defaults(trainable_model=mixed)


def test_fit_rejects_mismatched_loss_and_loader():
    # still NotImplementedError (upstream's type); the messages are in test_bad_inputs.py
    with pytest.raises(NotImplementedError, match="not a PairwiseLoss"):
        Quaterion.fit(Model(loss=TripletLoss()), trainer(), pair_loader())
    with pytest.raises(NotImplementedError, match="not a GroupLoss"):
        Quaterion.fit(Model(loss=ContrastiveLoss()), trainer(), group_loader())


def test_default_trainer_needs_validation_loader():
    with pytest.raises(ValueError, match="val_dataloader"):
        Quaterion.fit(Model(), None, group_loader())


class _SizeMetric(RetrievalRPrecision):
    resets = 0

    def reset(self):
        type(self).resets += 1
        super().reset()


def test_logged_names_and_no_batch_size_warning(tmp_path):
    metric = AttachedMetric("rprec", RetrievalRPrecision(), prog_bar=True)
    model = Model(metrics=[metric])
    stopping = EarlyStopping(monitor="validation_loss", patience=10)
    fit_trainer = trainer(
        max_epochs=2,
        callbacks=[stopping],
        logger=CSVLogger(str(tmp_path)),
        log_every_n_steps=1,
        num_sanity_val_steps=1,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Quaterion.fit(model, fit_trainer, group_loader(), group_loader(group_samples(8, seed=3)))
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "infer the `batch_size`" in m]
    keys = set(fit_trainer.callback_metrics)
    assert {"train_loss", "validation_loss", "rprec_train", "rprec_validation"} <= keys
    assert stopping.best_score is not None
    assert sum(isinstance(cb, CleanupCallback) for cb in fit_trainer.callbacks) == 1
    assert sum(isinstance(cb, MetricsCallback) for cb in fit_trainer.callbacks) == 1


def test_after_fit_model_is_plain_servable_and_loaders_reusable(tmp_path):
    train, val = group_loader(shuffle=True), group_loader(group_samples(8, seed=3))
    model = Model(cache_config=CacheConfig())
    fit_trainer = trainer()
    Quaterion.fit(model, fit_trainer, train, val)
    assert not any(isinstance(e, CacheEncoder) for e in model.model.encoders.values())
    records = [s.obj for s in group_samples(5, seed=9)]
    encoded = model.model.encode(records, to_numpy=False)
    assert encoded.shape == (5, 6)
    path = str(tmp_path / "servable")
    model.save_servable(path)
    loaded = SimilarityModel.load(path)
    torch.testing.assert_close(loaded.encode(records, to_numpy=False), encoded)

    ids, features, labels = train.collate_fn.pre_collate_fn([train.dataset[0], train.dataset[1]])
    assert len(ids) == 2 and features[0] is not None
    batch = next(iter(train))
    assert batch[0]["data"]["default"].shape == (8, 4)  # plain collator, raw data read again
    # same loaders, new model: default trainer (minus early stopping) and the same trainer
    defaults = Quaterion.trainer_defaults()
    defaults["callbacks"].pop(1)
    defaults.update(max_epochs=1, logger=False, default_root_dir=str(tmp_path))
    Quaterion.fit(Model(cache_config=CacheConfig()), pl.Trainer(**defaults), train, val)
    second = Model()
    Quaterion.fit(second, trainer(), train, val)
    assert second.model.encode(records).shape == (5, 6)


class _Switch(SwitchEncoder):
    @classmethod
    def encoder_selection(cls, record):
        return "pos" if float(record[0]) >= 0 else "neg"


class _SwitchModel(TrainableModel):
    def __init__(self, cache):
        self._use_cache = cache
        super().__init__()

    def configure_encoders(self):
        return _Switch({"pos": CountingEncoder(seed=1), "neg": CountingEncoder(seed=2)})

    def configure_head(self, input_embedding_size):
        return SwitchHead(
            {"pos": GatedHead(input_embedding_size), "neg": GatedHead(input_embedding_size)},
            input_embedding_size,
        )

    def configure_loss(self):
        return TripletLoss(mining="all")

    def configure_caches(self):
        return CacheConfig() if self._use_cache else None

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("cache", [False, True])
def test_switch_encoder_and_head_train_one_epoch(cache, tmp_path):
    defaults = Quaterion.trainer_defaults()
    defaults["callbacks"].pop(1)
    recorder = LossRecorder()
    defaults["callbacks"].append(recorder)
    defaults.update(max_epochs=1, logger=False, accelerator="cpu", default_root_dir=str(tmp_path))
    Quaterion.fit(_SwitchModel(cache), pl.Trainer(**defaults), group_loader())
    assert len(recorder.losses) == 3 and all(torch.isfinite(x) for x in recorder.losses)


def _resumable_fit(max_epochs, ckpt_dir, ckpt_path=None):
    torch.manual_seed(0)
    model = Model(cache_config=CacheConfig())
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, save_top_k=-1, every_n_epochs=1)
    recorder = LossRecorder()
    fit_trainer = trainer(
        max_epochs=max_epochs,
        enable_checkpointing=True,
        callbacks=[checkpoint, recorder],
        deterministic=True,
        num_sanity_val_steps=1,
    )
    val = group_loader(group_samples(8, seed=3), shuffle=True)
    Quaterion.fit(model, fit_trainer, group_loader(shuffle=True), val, ckpt_path=ckpt_path)
    return model.model.head.state_dict(), len(recorder.losses)


def test_resume_from_checkpoint_matches_uninterrupted_run(tmp_path):
    uninterrupted, steps = _resumable_fit(4, str(tmp_path / "a"))
    interrupted, _ = _resumable_fit(2, str(tmp_path / "b"))
    checkpoints = sorted(os.listdir(tmp_path / "b"))
    assert checkpoints[-1].startswith("epoch=1")
    resumed, resumed_steps = _resumable_fit(
        4, str(tmp_path / "c"), ckpt_path=str(tmp_path / "b" / checkpoints[-1])
    )
    assert (steps, resumed_steps) == (12, 6)  # the resumed run trains the last 2 epochs only
    assert not torch.allclose(interrupted["gates"], uninterrupted["gates"])
    for name, value in uninterrupted.items():
        torch.testing.assert_close(resumed[name], value)


@pytest.mark.parametrize("bad", ["cpu", {"max_epochs": 1}, 1])
def test_a_trainer_that_is_not_a_trainer_is_refused(bad):
    with pytest.raises(TypeError, match=r"trainer must be a pytorch_lightning.Trainer or None"):
        Quaterion.fit(Model(), bad, group_loader())


def test_a_bad_ckpt_path_is_refused_before_the_cache_fill(tmp_path):
    _resumable_fit(1, str(tmp_path / "run"))
    (good,) = (tmp_path / "run").iterdir()
    data = good.read_bytes()
    truncated, junk, empty, legacy = (tmp_path / n for n in ("cut.ckpt", "junk", "e", "old"))
    truncated.write_bytes(data[: len(data) // 2])  # a save killed mid-write
    junk.write_text("not a checkpoint")
    empty.write_bytes(b"")
    torch.save({"state_dict": {}}, legacy, _use_new_zipfile_serialization=False)
    cases = [
        (truncated, ValueError, "zip archive without its end"),
        (junk, ValueError, r"not a torch checkpoint \(it starts with b'not '\)"),
        (empty, ValueError, "is empty"),
        (tmp_path / "missing.ckpt", FileNotFoundError, "does not exist"),
        (tmp_path / "run", IsADirectoryError, rf"holds \['{good.name}'\]"),
        (5, TypeError, "got int 5"),
    ]
    for path, error, reason in cases:
        model = Model(cache_config=CacheConfig())
        with pytest.raises(error, match=reason) as info:
            Quaterion.fit(model, trainer(), group_loader(), ckpt_path=path)
        assert "ckpt_path" in str(info.value) and "ckpt_path=None" in str(info.value)
        assert model.model.encoders["default"].calls == 0  # nothing encoded yet
    from quaterion.train.ckpt_path_check import check_ckpt_path

    for fine in (None, good, str(good), legacy, "last", "best", "hpc", "registry:m", "s3://b/k"):
        check_ckpt_path(fine)
    fifo = tmp_path / "pipe.ckpt"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="is not a regular file"):  # and no hang reading it
        check_ckpt_path(fifo, trainer())


def test_a_trainer_reading_other_checkpoint_formats_gets_directories_and_files_unread(tmp_path):
    from pytorch_lightning.plugins.io import TorchCheckpointIO

    from quaterion.train.ckpt_path_check import check_ckpt_path, reads_single_files

    class ShardedIO(TorchCheckpointIO):  # e.g. a custom format spread over a directory
        pass

    custom = trainer(plugins=[ShardedIO()])
    assert not reads_single_files(custom) and reads_single_files(trainer())
    assert reads_single_files(None)
    (tmp_path / "sharded").mkdir()
    (tmp_path / "other.bin").write_text("a custom format")
    check_ckpt_path(tmp_path / "sharded", custom)
    check_ckpt_path(tmp_path / "other.bin", custom)
    with pytest.raises(FileNotFoundError, match="does not exist"):  # still checked
        check_ckpt_path(tmp_path / "missing", custom)
    with pytest.raises(IsADirectoryError):
        check_ckpt_path(tmp_path / "sharded", trainer())


def test_evaluate_delegates():
    class _Evaluator:
        def evaluate(self, dataset, model):
            return {"n": torch.tensor(len(dataset)), "model": model}

    result = Quaterion.evaluate(_Evaluator(), [1, 2, 3], "m")
    assert result["n"] == 3 and result["model"] == "m"


def test_evaluate_refuses_arguments_it_cannot_use_and_names_the_fix():
    from quaterion.eval.evaluator import Evaluator
    from quaterion.eval.samplers import GroupSampler

    evaluator = Evaluator(RetrievalRPrecision(), GroupSampler(sample_size=8))
    trainable = Model()
    samples = group_samples(8)
    cases = [
        ((None, samples, trainable.model), "evaluator must be an Evaluator"),
        ((evaluator, samples, trainable), "trainable model: pass its servable, trainable_model.model"),
        ((evaluator, samples, "servable"), "pass SimilarityModel.load\\(path\\)"),
        ((evaluator, trainable.model, samples), "the arguments are swapped"),
        ((evaluator, group_loader(samples), trainable.model), r"pass its dataset \(loader.dataset\)"),
        ((evaluator, None, trainable.model), "dataset must be a dataset or a list"),
        ((evaluator, samples, None), "model must be a SimilarityModel"),
    ]  # fmt: skip
    for arguments, reason in cases:
        with pytest.raises(TypeError, match=reason):
            Quaterion.evaluate(*arguments)
    # the accepted call agrees with the metric computed on the model's own vectors
    result = Quaterion.evaluate(evaluator, samples, trainable.model)["RetrievalRPrecision"]
    vectors = trainable.model.encode([s.obj for s in samples], to_numpy=False)
    hits, positions = naive_r_precision_counts(vectors, torch.tensor([s.group for s in samples]))
    torch.testing.assert_close(result, torch.tensor(hits / positions))


def test_plain_checkpoint_load_keeps_caller_rng(tmp_path):
    _resumable_fit(1, str(tmp_path))
    path = os.path.join(tmp_path, os.listdir(tmp_path)[0])
    torch.manual_seed(123)
    Model()  # the test model's hooks draw/reseed: the expected state includes that
    expected = torch.get_rng_state()
    torch.manual_seed(123)
    loaded = Model.load_from_checkpoint(path)
    assert torch.equal(torch.get_rng_state(), expected)
    assert set(loaded.state_dict()) == set(Model().state_dict())


@pytest.mark.parametrize("cache", [False, True], ids=["uncached", "cached"])
def test_barebones_trainer_trains_like_default_and_warns_it_logs_nothing(cache):
    def fit(**options):
        torch.manual_seed(0)
        config = CacheConfig(batch_size=8) if cache else None
        model = Model(cache_config=config, metrics=[AttachedMetric("rprec", RetrievalRPrecision())])
        recorder = LossRecorder()
        fit_trainer = trainer(max_epochs=2, callbacks=[recorder], **options)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            Quaterion.fit(model, fit_trainer, group_loader(shuffle=True), group_loader())
        messages = [str(w.message) for w in caught if "barebones" in str(w.message)]
        return model, recorder.losses, fit_trainer, messages

    default, default_losses, default_trainer, default_warned = fit()
    bare, bare_losses, bare_trainer, bare_warned = fit(barebones=True)
    assert bare_trainer.barebones and not default_trainer.barebones
    assert len(bare_losses) == len(default_losses) == 6
    assert torch.equal(torch.stack(bare_losses), torch.stack(default_losses))
    for a, b in zip(bare.model.head.parameters(), default.model.head.parameters()):
        assert torch.equal(a, b)
    assert "train_loss" in default_trainer.callback_metrics
    assert not bare_trainer.callback_metrics
    assert not default_warned
    assert len(bare_warned) == 1 and "logs nothing" in bare_warned[0]


class _BrokenBatches(torch.utils.data.Sampler):
    """A batch sampler whose ``iter()`` itself raises (as a spawned worker that cannot pickle
    the collate does): Lightning's clean-up then fails too, asking the loader for its length."""

    class Broken(Exception):
        pass

    def __len__(self):
        return 3

    def __iter__(self):  # not a generator: raises at iter()
        raise self.Broken("the user's own error")


def test_the_fit_raises_the_users_error_not_lightnings_follow_up_error():
    fit_trainer = trainer()
    broken = group_loader(batch_size=1, batch_sampler=_BrokenBatches())
    with pytest.raises(_BrokenBatches.Broken, match="the user's own error"):
        Quaterion.fit(Model(), fit_trainer, broken)
    (cleanup,) = [cb for cb in fit_trainer.callbacks if isinstance(cb, CleanupCallback)]
    assert isinstance(cleanup.failure, _BrokenBatches.Broken)
    # a later fit on the same trainer starts with no failure on record
    Quaterion.fit(Model(), fit_trainer, group_loader())
    assert cleanup.failure is None
