"""The fit's hold on ``save_dir`` ends with the model that kept it: a model garbage-collected
without clean-up, a ``trainer.fit`` run by the user after ``cache_loaders``; a hold this
process still keeps is named as such."""

import gc
from copy import deepcopy

import pytest
import pytorch_lightning as pl

from quaterion.train.cache import CacheConfig, _save_dir
from tests.quaterion.train.cache.test_save_dir_access import _try_write
from tests.quaterion.train.helpers import CountingEncoder, Model, fit_data, fit_losses, trainer


def _model(save_dir):
    return Model(
        encoders={"default": CountingEncoder()}, cache_config=CacheConfig(save_dir=str(save_dir))
    )


def _fit_other_data(save_dir):
    """A fit of another model on other data in the same save_dir: it must fill and write."""
    encoder = CountingEncoder()
    config = CacheConfig(save_dir=str(save_dir))
    fit_losses(Model(encoders={"default": encoder}, cache_config=config), *fit_data(n=12)[1])
    return encoder.calls


@pytest.fixture
def short_wait(monkeypatch):
    monkeypatch.setattr(_save_dir, "LOCK_WAIT_S", 0.3)


def test_a_garbage_collected_model_holds_nothing(tmp_path, short_wait):
    model = _model(tmp_path)
    model.cache_loaders(trainer(), *fit_data()[1])  # never cleaned up
    del model
    gc.collect()
    assert _fit_other_data(tmp_path) == 12 + 8


def test_a_user_run_trainer_fit_ends_the_hold(tmp_path, short_wait):
    model = _model(tmp_path)
    fit_trainer = trainer()
    fit = model.cache_loaders(fit_trainer, *fit_data()[1])
    fit_trainer.fit(model, fit.train, fit.val)  # no Quaterion.fit, no CleanupCallback
    assert _fit_other_data(tmp_path) == 12 + 8


def test_a_hold_kept_by_this_process_names_the_fix(tmp_path, short_wait):
    class Failing(pl.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            raise RuntimeError("boom")

    model = _model(tmp_path)
    fit_trainer = trainer(callbacks=[Failing()])
    fit = model.cache_loaders(fit_trainer, *fit_data()[1])
    with pytest.raises(RuntimeError, match="boom"):  # Lightning runs no teardown hook then
        fit_trainer.fit(model, fit.train, fit.val)
    with pytest.raises(_save_dir.CacheDirInUseError, match="held by this process.*unwrap_cache"):
        _fit_other_data(tmp_path)
    model.unwrap_cache()
    assert _fit_other_data(tmp_path) == 12 + 8


def test_a_fit_failing_mid_epoch_then_a_fit_of_other_data(tmp_path, short_wait):
    class FailingStep(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == 1:
                raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fit_losses(_model(tmp_path), *fit_data()[1], callbacks=[FailingStep()])
    assert _fit_other_data(tmp_path) == 12 + 8


def test_fits_in_a_row_on_one_save_dir(tmp_path, short_wait):
    """Same data (loaded, nothing encoded), other data (filled), the first data again."""
    counts = []
    for n in (None, None, 12, None):
        encoder = CountingEncoder()
        model = Model(
            encoders={"default": encoder}, cache_config=CacheConfig(save_dir=str(tmp_path))
        )
        fit_losses(model, *fit_data(n=n)[1])
        counts.append(encoder.calls)
    assert counts == [24 + 8, 0, 12 + 8, 24 + 8]


def test_a_deep_copy_of_a_holding_model_holds_nothing(tmp_path):
    model = _model(tmp_path)
    model.cache_loaders(trainer(), *fit_data()[1])
    copy = deepcopy(model)  # e.g. ddp_spawn pickles the model to its processes
    copy.unwrap_cache()  # the copy's clean-up leaves the original's hold alone
    assert _try_write(tmp_path) == "refused"
    del copy
    gc.collect()
    assert _try_write(tmp_path) == "refused"
    model.unwrap_cache()
    assert _try_write(tmp_path) == "written"
