"""A fit resumed from a checkpoint trains on the batches of an uninterrupted fit.

Every fit records, at each training step, the dataset indices of the batch it trains on
(read off the records, whose first feature is their index; in a fully cached fit, which
trains on store rows, the batch the sampler has just handed out: the store-served loader
has no workers and is read one batch per step) and the step's loss. A run of ``EPOCHS`` epochs straight is the reference;
a run stopped after ``STOP`` epochs and resumed from its checkpoint in a fresh model,
loader and sampler must record exactly the same batches (and the same losses).
"""

import re
import warnings

import pytest
import pytorch_lightning as pl
import torch

from quaterion import Quaterion
from quaterion.dataset import GroupCycleBatchSampler, GroupSimilarityDataLoader
from quaterion.train.cache import CacheConfig
from tests.quaterion.train.helpers import Model, group_samples, trainer

EPOCHS, STOP = 4, 2
# what the warnings of a resume that cannot train on an uninterrupted fit's batches say
ORDER_WARNING = re.compile("batch order|batch sampler|inside epoch|resumable|starts again")
SAMPLES = group_samples(30, groups=5)
for _index, _sample in enumerate(SAMPLES):
    _sample.obj[0] = _index  # a batch of raw records names its dataset indices
GROUPS = [sample.group for sample in SAMPLES]


class RecordingSampler(GroupCycleBatchSampler):
    """GroupCycleBatchSampler keeping the batch it handed out last."""

    def __iter__(self):
        for batch in super().__iter__():
            self.last = list(batch)
            yield batch


class BatchRecorder(pl.Callback):
    """``(epoch, indices)`` of each training batch, and each step's loss."""

    def __init__(self, sampler, cached):
        self.sampler, self.cached, self.batches, self.losses = sampler, cached, [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.cached:  # store rows: ask the sampler
            indices = self.sampler.last
        else:  # the raw records, whose first feature is their index
            indices = batch[0]["data"]["default"][:, 0].round().long().tolist()
        self.batches.append((trainer.current_epoch, indices))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(outputs["loss"].detach().clone())


def fit(tmp_path, epochs, ckpt=None, cached=False, raw=False, workers=0, val=False, **checkpointing):
    """One fit of a fresh model, loader and sampler; returns its :class:`BatchRecorder`.
    ``raw``: ``trainer.fit`` itself instead of ``Quaterion.fit``."""
    sampler = RecordingSampler(GROUPS, batch_size=8, seed=5)
    loader = GroupSimilarityDataLoader(SAMPLES, batch_sampler=sampler, num_workers=workers)
    model = Model(cache_config=CacheConfig() if cached else None)
    recorder = BatchRecorder(sampler, cached)
    saving = pl.callbacks.ModelCheckpoint(
        dirpath=tmp_path, filename="{epoch}-{step}", save_top_k=-1, **checkpointing
    )
    torch.manual_seed(0)
    fit_trainer = trainer(
        max_epochs=epochs, callbacks=[recorder, saving], enable_checkpointing=True
    )
    path = None if ckpt is None else str(ckpt)
    val_loader = None
    if val:
        val_loader = GroupSimilarityDataLoader(group_samples(8, groups=2, seed=3), batch_size=8)
    if raw:
        model.setup_dataloader(loader)
        if val_loader is not None:
            model.setup_dataloader(val_loader)
        fit_trainer.fit(model, loader, val_loader, ckpt_path=path)
    else:
        Quaterion.fit(model, fit_trainer, loader, val_loader, ckpt_path=path)
    if cached:
        assert loader.full_cache_used is False  # put back after the fit
    return recorder


def assert_resumed_like_uninterrupted(tmp_path, ckpt, **options):
    straight = fit(tmp_path / "straight", EPOCHS, **options)
    first = fit(tmp_path / "first", STOP, **options)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed = fit(tmp_path / "resumed", EPOCHS, ckpt=tmp_path / "first" / ckpt, **options)
    assert not [w for w in caught if ORDER_WARNING.search(str(w.message))]  # nothing to warn about
    per_epoch = len(straight.batches) // EPOCHS
    assert per_epoch == 3 and len(first.batches) == STOP * per_epoch
    assert first.batches + resumed.batches == straight.batches
    # the epochs differ from each other: a resume that started the order over would fail
    assert [b for _, b in straight.batches[:per_epoch]] != [b for _, b in resumed.batches[:per_epoch]]
    torch.testing.assert_close(
        torch.stack(first.losses + resumed.losses), torch.stack(straight.losses)
    )


@pytest.mark.parametrize("cached", [False, True], ids=["raw data", "fully cached"])
def test_quaterion_fit_resumed_at_an_epoch_end(tmp_path, cached):
    """The checkpoint ModelCheckpoint writes at the end of an epoch (Lightning does not
    hand loader states back for it: TrainableModel restores the batch order)."""
    assert_resumed_like_uninterrupted(tmp_path, f"epoch={STOP - 1}-step={STOP * 3}.ckpt", cached=cached)


def test_trainer_fit_resumed_at_an_epoch_end(tmp_path):
    """``trainer.fit`` itself: the order is restored at train start."""
    assert_resumed_like_uninterrupted(tmp_path, f"epoch={STOP - 1}-step={STOP * 3}.ckpt", raw=True)


def test_resumed_from_a_checkpoint_lightning_restores_the_loader_from(tmp_path):
    """A checkpoint written after the epoch's validation (not at the train epoch's end):
    Lightning itself calls the loader's load_state_dict on resume."""
    assert_resumed_like_uninterrupted(
        tmp_path, f"epoch={STOP - 1}-step={STOP * 3}.ckpt", val=True, save_on_train_epoch_end=False
    )


def test_resumed_with_loader_workers_through_quaterion_fit(tmp_path):
    """Quaterion.fit restores the order before the loader's workers take batches."""
    assert_resumed_like_uninterrupted(
        tmp_path, f"epoch={STOP - 1}-step={STOP * 3}.ckpt", workers=1
    )
