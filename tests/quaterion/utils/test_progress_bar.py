from types import SimpleNamespace

import pytorch_lightning as pl
import torch

from quaterion.train.cache import CacheConfig
from quaterion.utils.progress_bar import FixedLengthProcessionSpeed, QuaterionProgressBar
from tests.quaterion.train.helpers import Model, group_loader


def test_speed_column_pads_to_widest_value():
    column = FixedLengthProcessionSpeed(style="grey70")
    assert column.render(SimpleNamespace(speed=None)).plain == "0.00it/s"
    assert column.render(SimpleNamespace(speed=123.456)).plain == "123.46it/s"
    assert column.render(SimpleNamespace(speed=1.5)).plain == "  1.50it/s"


def test_default_theme_and_columns():
    bar = QuaterionProgressBar()
    assert (bar.theme.progress_bar, bar.theme.progress_bar_finished) == ("#4881AD", "#67C87A")
    assert (bar.theme.time, bar.theme.processing_speed) == ("grey54", "grey70")
    columns = bar.configure_columns(trainer=None)
    assert len(columns) == 5 and isinstance(columns[-1], FixedLengthProcessionSpeed)


class _Recorder(QuaterionProgressBar):
    def __init__(self):
        super().__init__()
        self.descriptions = []

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.descriptions.append(self.predict_description)
        super().on_predict_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)


def test_fill_shows_caching_then_default_description():
    bar = _Recorder()
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, callbacks=[bar], enable_model_summary=False
    )
    model = Model(cache_config=CacheConfig(batch_size=10))
    loader = group_loader()
    model.setup_dataloader(loader)
    model.setup_cache(trainer, loader, None)
    assert bar.descriptions == ["Caching"] * 3
    assert bar.predict_description == "Predicting"


class _Predictor(pl.LightningModule):
    def predict_step(self, batch, batch_idx):
        return batch


def test_plain_predict_keeps_lightning_description():
    bar = _Recorder()
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, callbacks=[bar], enable_model_summary=False
    )
    trainer.predict(_Predictor(), torch.utils.data.DataLoader(torch.arange(4), batch_size=2))
    assert bar.descriptions == ["Predicting"] * 2
