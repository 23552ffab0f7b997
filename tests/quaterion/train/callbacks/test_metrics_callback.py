import pytorch_lightning as pl

from quaterion import Quaterion
from quaterion.eval.attached_metric import AttachedMetric
from quaterion.eval.group import RetrievalRPrecision
from quaterion.train.callbacks import MetricsCallback
from tests.quaterion.train.helpers import Model, group_loader, trainer


class _Spy(RetrievalRPrecision):
    def __init__(self, log):
        super().__init__()
        self.entries = log

    def reset(self):
        self.entries.append("reset")
        super().reset()


class _HookLog(pl.Callback):
    def __init__(self, log):
        self.entries = log

    def on_sanity_check_end(self, trainer, pl_module):
        self.entries.append("sanity_end")

    def on_train_epoch_start(self, trainer, pl_module):
        self.entries.append("train_start")

    def on_train_epoch_end(self, trainer, pl_module):
        self.entries.append("train_end")

    def on_validation_epoch_start(self, trainer, pl_module):
        self.entries.append("val_start")

    def on_validation_epoch_end(self, trainer, pl_module):
        self.entries.append("val_end")


def test_reset_after_each_listed_hook():
    log = []
    model = Model(metrics=[AttachedMetric("spy", _Spy(log))])
    fit_trainer = trainer(max_epochs=1, num_sanity_val_steps=1, callbacks=[_HookLog(log)])
    Quaterion.fit(model, fit_trainer, group_loader(), group_loader())
    hooks = [entry for entry in log if entry != "reset"]
    assert hooks == [
        "val_start",
        "val_end",
        "sanity_end",
        "train_start",
        "val_start",
        "val_end",
        "train_end",
    ]
    # MetricsCallback runs after the user's callback at every hook: one reset follows each
    for i, entry in enumerate(log):
        if entry != "reset":
            assert log[i + 1] == "reset", (i, log)


def test_reset_metrics_helper():
    log = []
    model = Model(metrics=[AttachedMetric("a", _Spy(log)), AttachedMetric("b", _Spy(log))])
    MetricsCallback.reset_metrics(model)
    assert log == ["reset", "reset"]
