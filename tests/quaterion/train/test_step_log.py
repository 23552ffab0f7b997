"""The per-step log shortcut must leave every logged value exactly as ``self.log`` leaves it."""

import copy
import csv
import pickle

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger

from quaterion import Quaterion
from quaterion.eval.attached_metric import AttachedMetric
from quaterion.eval.group import RetrievalRPrecision
from quaterion.train._step_log import StepLogger, _on_device
from tests.quaterion.train.helpers import Model, group_loader, group_samples, trainer


class MetricsSnapshots(pl.Callback):
    """Copies of the trainer's metric dicts after every train batch and validation epoch."""

    def __init__(self):
        self.snapshots = []

    def _take(self, trainer, where):
        taken = {"where": where}
        for kind in ("callback_metrics", "progress_bar_metrics", "logged_metrics"):
            taken[kind] = {k: torch.as_tensor(v).clone() for k, v in getattr(trainer, kind).items()}
        self.snapshots.append(taken)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._take(trainer, f"train {trainer.current_epoch}.{batch_idx}")

    def on_validation_epoch_end(self, trainer, pl_module):
        self._take(trainer, f"validation {trainer.current_epoch}")

    def on_train_epoch_end(self, trainer, pl_module):
        self._take(trainer, f"train end {trainer.current_epoch}")


@pytest.fixture
def log_calls(monkeypatch):
    """Names passed to ``LightningModule.log``, in call order (the shortcut stays active)."""
    calls = []
    real_log = pl.LightningModule.log

    def counting_log(self, name, *args, **kwargs):
        calls.append(name)
        return real_log(self, name, *args, **kwargs)

    monkeypatch.setattr(pl.LightningModule, "log", counting_log)
    return calls


def _metric():
    return AttachedMetric("rrp", RetrievalRPrecision(), prog_bar=True, on_epoch=True)


def _fit(tmp_path, name):
    torch.manual_seed(0)
    model = Model(metrics=[_metric()])
    snapshots = MetricsSnapshots()
    logger = CSVLogger(str(tmp_path), name=name, version=0)
    fit_trainer = trainer(
        max_epochs=3,
        callbacks=[snapshots],
        logger=logger,
        log_every_n_steps=1,
        num_sanity_val_steps=1,
    )
    train = group_loader(group_samples(n=24), shuffle=True)
    val = group_loader(group_samples(n=24, seed=3), batch_size=16)
    Quaterion.fit(model, fit_trainer, train, val)
    test = group_loader(group_samples(n=16, seed=4), batch_size=8)
    model.setup_dataloader(test)
    tested = fit_trainer.test(model, test, verbose=False)
    with open(f"{logger.log_dir}/metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    tested = {"callback_metrics": {k: torch.as_tensor(v) for k, v in tested[0].items()}}
    return snapshots.snapshots + [{"where": "test", **tested}], rows, model


def test_shortcut_logs_exactly_what_self_log_logs(tmp_path, monkeypatch, log_calls):
    calls = log_calls
    fast_snapshots, fast_rows, _ = _fit(tmp_path, "fast")
    fast_calls = list(calls)

    calls.clear()
    monkeypatch.setattr(StepLogger, "_remember", lambda *args: None)  # every value via self.log
    slow_snapshots, slow_rows, _ = _fit(tmp_path, "slow")

    # loss and metric for 3 epochs x 3 train and 1 sanity + 3 x 2 validation batches, and the
    # loss alone for 2 test batches (metrics attach to training and validation by default)
    assert len(calls) == 2 * (9 + 1 + 6) + 2
    # the shortcut sends only the first value of each (hook, name) through self.log
    assert sorted(fast_calls) == sorted(
        ["train_loss", "rrp_train", "validation_loss", "rrp_validation", "test_loss"]
    )
    assert fast_rows == slow_rows
    assert len(fast_snapshots) == len(slow_snapshots) > 9
    assert set(fast_snapshots[-1]["callback_metrics"]) == {"test_loss"}
    for fast, slow in zip(fast_snapshots, slow_snapshots):
        assert fast["where"] == slow["where"]
        for kind in ("callback_metrics", "progress_bar_metrics", "logged_metrics"):
            if kind not in fast:
                continue
            assert fast[kind].keys() == slow[kind].keys(), (fast["where"], kind)
            for key in fast[kind]:
                assert not fast[kind][key].isnan(), (fast["where"], kind, key)
                assert torch.equal(fast[kind][key], slow[kind][key]), (fast["where"], kind, key)
    epoch_keys = {"rrp_train_epoch", "validation_loss", "rrp_validation"}
    assert epoch_keys <= set(fast_snapshots[-2]["callback_metrics"])


def test_validation_loss_is_the_batch_size_weighted_mean(tmp_path):
    snapshots, _, model = _fit(tmp_path, "mean")
    val = group_loader(group_samples(n=24, seed=3), batch_size=16)
    model.setup_dataloader(val)
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for features, targets in val:
            loss = model.loss(embeddings=model.model(features), **targets)
            size = targets["groups"].shape[0]
            total, count = total + float(loss) * size, count + size
    logged = snapshots[-2]["callback_metrics"]["validation_loss"]
    assert float(logged) == pytest.approx(total / count, rel=1e-5)


def test_overridden_log_sees_every_call():
    seen = []

    class LoggingModel(Model):
        def log(self, name, value, *args, **kwargs):
            seen.append(name)
            super().log(name, value, *args, **kwargs)

    Quaterion.fit(LoggingModel(), trainer(max_epochs=2), group_loader(shuffle=True))
    assert seen == ["train_loss"] * 6


def test_value_off_the_stored_device_goes_through_self_log():
    class Stored:
        value = torch.zeros((), device="meta")
        cumulated_batch_size = torch.zeros((), device="meta")

    assert not _on_device(Stored(), torch.device("cpu"))
    assert _on_device(Stored(), torch.device("meta"))
    Stored.cumulated_batch_size = torch.zeros(())
    assert not _on_device(Stored(), torch.device("meta"))
    Stored.value = 1.0  # not a tensor: never a shortcut
    assert not _on_device(Stored(), torch.device("cpu"))


def test_logger_pickles_and_copies_empty_after_a_fit():
    model = Model()
    Quaterion.fit(model, trainer(max_epochs=1), group_loader())
    assert model._step_logger._keys  # the key was remembered during the fit
    assert pickle.loads(pickle.dumps(model._step_logger))._keys == {}
    assert copy.deepcopy(model._step_logger)._keys == {}


def test_new_result_collection_is_not_trusted(log_calls):
    """A second fit (new trainer, new result collections) registers its keys again."""
    calls = log_calls
    model = Model()
    for _ in range(2):
        Quaterion.fit(model, trainer(max_epochs=2), group_loader())
    assert calls == ["train_loss", "train_loss"]
