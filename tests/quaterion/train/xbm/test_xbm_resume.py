"""The cross-batch memory goes into every checkpoint and comes back when a fit resumes: a fit
stopped by an exception inside an epoch and resumed from its last checkpoint trains like an
uninterrupted fit (same loss at every step, same final weights)."""

import glob
import os

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch.testing import assert_close

from quaterion import Quaterion
from quaterion.dataset import GroupCycleBatchSampler, GroupSimilarityDataLoader
from quaterion.loss import TripletLoss
from quaterion.train.xbm import XbmConfig, XbmDevice
from quaterion.train.xbm.xbm_buffer import XbmBuffer
from quaterion.train.xbm.xbm_checkpoint import XBM_KEY
from tests.quaterion.train.helpers import CountingEncoder, Model, group_samples, trainer

EPOCHS, STOP_STEP = 3, 5  # 4 batches an epoch: the fit stops after batch 1 of epoch 1
SAMPLES = group_samples(32, groups=4)


class Stopped(Exception):
    """Raised by the interrupted fit at ``STOP_STEP``."""


class XbmModel(Model):
    """Records each training step's loss; raises ``Stopped`` at ``stop_at``."""

    def __init__(self, stop_at=None, buffer_size=20):
        self.stop_at, self.losses = stop_at, []
        xbm = XbmConfig(buffer_size=buffer_size, start_iteration=1, device=XbmDevice.CPU)
        encoders = {"default": CountingEncoder(trainable=True)}
        super().__init__(encoders=encoders, lr=0.1, xbm=xbm, loss=TripletLoss(mining="hard"))

    def training_step(self, batch, batch_idx, **kwargs):
        if self.trainer.global_step == self.stop_at:
            raise Stopped()
        loss = super().training_step(batch, batch_idx, **kwargs)
        self.losses.append(loss.detach().clone())
        return loss


def fit(directory, stop_at=None, ckpt_path=None, **model_options) -> XbmModel:
    pl.seed_everything(1, verbose=False)
    model = XbmModel(stop_at=stop_at, **model_options)
    checkpoints = ModelCheckpoint(dirpath=directory, every_n_train_steps=1, save_top_k=-1)
    fit_trainer = trainer(max_epochs=EPOCHS, enable_checkpointing=True, callbacks=[checkpoints])
    sampler = GroupCycleBatchSampler([s.group for s in SAMPLES], batch_size=8, seed=3)
    loader = GroupSimilarityDataLoader(SAMPLES, batch_sampler=sampler)
    try:
        Quaterion.fit(model, fit_trainer, loader, ckpt_path=ckpt_path)
    except Stopped:
        pass
    return model


def last_checkpoint(directory) -> str:
    return max(glob.glob(os.path.join(directory, "*.ckpt")), key=os.path.getmtime)


@pytest.mark.slow
def test_a_fit_resumed_inside_an_epoch_trains_like_an_uninterrupted_one(tmp_path):
    uninterrupted = fit(tmp_path / "a")
    stopped = fit(tmp_path / "b", stop_at=STOP_STEP)
    resumed = fit(tmp_path / "c", ckpt_path=last_checkpoint(tmp_path / "b"))
    assert (len(stopped.losses), len(resumed.losses)) == (STOP_STEP, 4 * EPOCHS - STOP_STEP)
    assert_close(
        torch.stack(stopped.losses + resumed.losses),
        torch.stack(uninterrupted.losses),
        rtol=1e-5,
        atol=1e-6,
    )
    for got, expected in zip(resumed.parameters(), uninterrupted.parameters()):
        assert_close(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("change", ["no memory saved", "another buffer_size"])
def test_a_checkpoint_that_cannot_restore_the_memory_warns_that_it_starts_empty(tmp_path, change):
    fit(tmp_path / "b", stop_at=STOP_STEP)
    path = last_checkpoint(tmp_path / "b")
    options = {}
    if change == "no memory saved":
        checkpoint = torch.load(path, weights_only=False)
        del checkpoint[XBM_KEY]
        torch.save(checkpoint, path)
        words = "holds no cross-batch memory"
    else:
        options["buffer_size"] = 12
        words = "20 rows 6 wide, this one 12 rows 6 wide"
    with pytest.warns(UserWarning, match="cannot restore the cross-batch memory") as record:
        resumed = fit(tmp_path / "c", ckpt_path=path, **options)
    assert any(words in str(warning.message) for warning in record)
    assert len(resumed.losses) == 4 * EPOCHS - STOP_STEP


def filled_buffer(size=7, padded=True) -> XbmBuffer:
    buffer = XbmBuffer(XbmConfig(buffer_size=size, device=XbmDevice.CPU), embedding_size=3)
    generator = torch.Generator().manual_seed(0)
    for step in range(3):  # 9 rows into 7 slots: wrapped, the pointer at 2
        valid = torch.tensor([True, step != 1, True]) if padded else None
        rows = torch.randn(3, 3, generator=generator)
        buffer.queue(rows, torch.randint(0, 4, (3,), generator=generator), valid)
    return buffer


@pytest.mark.parametrize("padded", [False, True])
def test_a_restored_buffer_reads_and_fills_like_the_saved_one(padded):
    saved = filled_buffer(padded=padded)
    state = saved.state_dict()
    restored = XbmBuffer(XbmConfig(buffer_size=7, device=XbmDevice.CPU), embedding_size=3)
    restored.load_state_dict(state)
    saved_rows = state["embeddings"].clone()
    rows, groups = torch.ones(4, 3), torch.arange(4)
    for buffer in (saved, restored):
        assert buffer.is_full and buffer.p == 2
        buffer.queue(rows, groups)
    # the state is a copy: neither buffer going on changes it
    assert_close(state["embeddings"], saved_rows, rtol=0, atol=0)
    for got, expected in zip(restored.get(), saved.get()):
        assert_close(got, expected, rtol=0, atol=0)
    if padded:
        assert restored.valid_rows().tolist() == saved.valid_rows().tolist()
    else:
        assert restored.valid_rows() is None and saved.valid_rows() is None
    assert restored.p == saved.p == 6


def test_a_saved_memory_of_another_size_is_refused():
    state = filled_buffer().state_dict()
    other = XbmBuffer(XbmConfig(buffer_size=8, device=XbmDevice.CPU), embedding_size=3)
    with pytest.raises(ValueError, match="7 rows 3 wide, this one 8 rows 3 wide"):
        other.load_state_dict(state)
    assert other.get()[0].shape == (0, 3)
