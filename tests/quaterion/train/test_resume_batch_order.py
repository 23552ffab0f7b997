"""A fit resumed from a checkpoint trains on the batches of an uninterrupted fit.

Every fit records, at each training step, the dataset indices of the batch it trains on
(read off the records, whose first feature is their index; in a fully cached fit, which
trains on store rows, the batch the sampler has just handed out: the store-served loader
has no workers and is read one batch per step) and the step's loss. A run of ``EPOCHS``
epochs straight is the reference; a run stopped after ``STOP`` epochs and resumed from its
checkpoint in a fresh model, loader and sampler must record exactly the same batches (and
the same losses).
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
        if self.cached:  # store rows (int64), served from the cache: ask the sampler
            assert batch[0]["data"]["default"].dtype == torch.int64
            indices = self.sampler.last
        else:  # the raw records, whose first feature is their index
            indices = batch[0]["data"]["default"][:, 0].round().long().tolist()
        self.batches.append((trainer.current_epoch, indices))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(outputs["loss"].detach().clone())


def fit_loader(workers=0):
    """A fresh loader on a fresh :class:`RecordingSampler`."""
    sampler = RecordingSampler(GROUPS, batch_size=8, seed=5)
    return GroupSimilarityDataLoader(SAMPLES, batch_sampler=sampler, num_workers=workers)


def fit(
    tmp_path,
    epochs,
    ckpt=None,
    cached=False,
    raw=False,
    workers=0,
    val=False,
    limit=None,
    **checkpointing,
):
    """One fit of a fresh model, loader and sampler; returns its :class:`BatchRecorder`.
    ``raw``: ``trainer.fit`` itself instead of ``Quaterion.fit``."""
    loader = fit_loader(workers)
    sampler = loader.batch_sampler
    model = Model(cache_config=CacheConfig() if cached else None)
    recorder = BatchRecorder(sampler, cached)
    saving = pl.callbacks.ModelCheckpoint(
        dirpath=tmp_path, filename="{epoch}-{step}", save_top_k=-1, **checkpointing
    )
    torch.manual_seed(0)
    fit_trainer = trainer(
        max_epochs=epochs,
        callbacks=[recorder, saving],
        enable_checkpointing=True,
        limit_train_batches=limit,
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


def assert_resumed_like_uninterrupted(tmp_path, **options):
    """Fit ``STOP`` epochs, resume from the checkpoint of the last one's end to ``EPOCHS``:
    the batches and losses of a fit of ``EPOCHS`` straight, without a warning."""
    straight = fit(tmp_path / "straight", EPOCHS, **options)
    first = fit(tmp_path / "first", STOP, **options)
    per_epoch = options.get("limit") or 3
    ckpt = tmp_path / "first" / f"epoch={STOP - 1}-step={STOP * per_epoch}.ckpt"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed = fit(tmp_path / "resumed", EPOCHS, ckpt=ckpt, **options)
    assert not [w for w in caught if ORDER_WARNING.search(str(w.message))]  # nothing to warn about
    assert len(straight.batches) == EPOCHS * per_epoch and len(first.batches) == STOP * per_epoch
    assert first.batches + resumed.batches == straight.batches
    # the epochs differ from each other: a resume that started the order over would fail
    assert [b for _, b in straight.batches[:per_epoch]] != [
        b for _, b in resumed.batches[:per_epoch]
    ]
    torch.testing.assert_close(
        torch.stack(first.losses + resumed.losses), torch.stack(straight.losses)
    )


@pytest.mark.parametrize("limit", [None, 2], ids=["whole epochs", "limit_train_batches"])
@pytest.mark.parametrize("cached", [False, True], ids=["raw data", "fully cached"])
def test_quaterion_fit_resumed_at_an_epoch_end(tmp_path, cached, limit):
    """The checkpoint ModelCheckpoint writes at the end of an epoch (Lightning does not
    hand loader states back for it: TrainableModel restores the batch order)."""
    assert_resumed_like_uninterrupted(tmp_path, cached=cached, limit=limit)


def test_trainer_fit_resumed_at_an_epoch_end(tmp_path):
    """``trainer.fit`` itself: the order is restored at train start."""
    assert_resumed_like_uninterrupted(tmp_path, raw=True)


def test_resumed_from_a_checkpoint_lightning_restores_the_loader_from(tmp_path):
    """A checkpoint written after the epoch's validation (not at the train epoch's end):
    Lightning itself calls the loader's load_state_dict on resume."""
    assert_resumed_like_uninterrupted(tmp_path, val=True, save_on_train_epoch_end=False)


def test_resumed_with_loader_workers_through_quaterion_fit(tmp_path):
    """Quaterion.fit restores the order before the loader's workers take batches."""
    assert_resumed_like_uninterrupted(tmp_path, workers=1)


def first_run_checkpoint(tmp_path, **options):
    """Fit ``STOP`` epochs; the path of the checkpoint written at the last one's end."""
    first = fit(tmp_path / "first", STOP, **options)
    return first, tmp_path / "first" / f"epoch={STOP - 1}-step={STOP * 3}.ckpt"


def fit_warned(tmp_path, ckpt, **options):
    """Resume from ``ckpt``; ``(recorder, messages of the batch-order warnings)``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed = fit(tmp_path / "resumed", EPOCHS, ckpt=ckpt, **options)
    return resumed, [str(w.message) for w in caught if ORDER_WARNING.search(str(w.message))]


def strip_batch_order(path, old):
    """A copy of checkpoint ``path`` at ``old`` as written before the loader state was kept:
    no TrainableModel entry, no loader states of Lightning's (no loader was stateful)."""
    checkpoint = torch.load(path, weights_only=True)
    del checkpoint["quaterion_batch_order"]
    del checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    torch.save(checkpoint, old)
    return old


@pytest.mark.parametrize("val", [False, True], ids=["train epoch end", "after validation"])
def test_a_checkpoint_without_the_batch_order_still_resumes_and_warns(tmp_path, val):
    """A checkpoint written before the loader state was kept (neither TrainableModel's entry
    nor Lightning's loader states) resumes, from the sampler's seed, and says so."""
    straight = fit(tmp_path / "straight", EPOCHS, val=val)
    _, path = first_run_checkpoint(tmp_path, val=val, save_on_train_epoch_end=not val)
    old = strip_batch_order(path, tmp_path / "old.ckpt")
    resumed, messages = fit_warned(tmp_path, old, val=val, save_on_train_epoch_end=not val)
    assert len(messages) == 1 and "holds no batch order" in messages[0]
    assert "RecordingSampler starts again from its seed" in messages[0]
    per_epoch = 3
    assert [b for _, b in resumed.batches] == [b for _, b in straight.batches[: 2 * per_epoch]]


def plain_loader(workers=0):
    return GroupSimilarityDataLoader(
        SAMPLES, batch_size=8, shuffle=True, drop_last=True, num_workers=workers
    )


def test_a_loader_whose_batch_sampler_keeps_no_state_resumes_quietly(tmp_path):
    """A shuffled loader (torch's BatchSampler: no state) writes the state None and resumes
    without a batch-order warning; the global random state TrainableModel restores makes
    its shuffles those of an uninterrupted fit."""
    losses = {}
    for name, epochs, ckpt in [("straight", EPOCHS, None), ("first", STOP, None)] + [
        ("resumed", EPOCHS, f"epoch={STOP - 1}-step={STOP * 3}.ckpt")
    ]:
        recorder = BatchRecorder(None, cached=False)
        saving = pl.callbacks.ModelCheckpoint(
            dirpath=tmp_path / name, filename="{epoch}-{step}", save_top_k=-1
        )
        torch.manual_seed(0)
        fit_trainer = trainer(
            max_epochs=epochs, callbacks=[recorder, saving], enable_checkpointing=True
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            path = None if ckpt is None else str(tmp_path / "first" / ckpt)
            Quaterion.fit(Model(), fit_trainer, plain_loader(), ckpt_path=path)
        assert not [w for w in caught if ORDER_WARNING.search(str(w.message))]
        losses[name] = recorder
    first, resumed, straight = losses["first"], losses["resumed"], losses["straight"]
    assert torch.load(
        tmp_path / "first" / f"epoch={STOP - 1}-step={STOP * 3}.ckpt", weights_only=True
    )["quaterion_batch_order"]["loader"] == {"batch_sampler": None}
    assert first.batches + resumed.batches == straight.batches
    torch.testing.assert_close(
        torch.stack(first.losses + resumed.losses), torch.stack(straight.losses)
    )


def test_switching_between_a_stateful_and_a_stateless_batch_sampler_warns(tmp_path):
    """Resuming with another kind of batch sampler than the run that wrote the checkpoint
    had: the batches cannot be that run's, which the loader says."""
    _, ordered = first_run_checkpoint(tmp_path / "ordered")
    saving = pl.callbacks.ModelCheckpoint(
        dirpath=tmp_path / "plain", filename="{epoch}-{step}", save_top_k=-1
    )
    plain_trainer = trainer(max_epochs=STOP, callbacks=[saving], enable_checkpointing=True)
    Quaterion.fit(Model(), plain_trainer, plain_loader())
    plain = tmp_path / "plain" / f"epoch={STOP - 1}-step={STOP * 3}.ckpt"
    _, messages = fit_warned(tmp_path / "a", plain)
    assert len(messages) == 1
    assert "holds no batch sampler state" in messages[0] and "RecordingSampler" in messages[0]
    with pytest.warns(UserWarning, match="BatchSampler keeps none, so the state is left unused"):
        resume_trainer = trainer(max_epochs=EPOCHS)
        Quaterion.fit(Model(), resume_trainer, plain_loader(), ckpt_path=str(ordered))
    assert resume_trainer.current_epoch == EPOCHS


@pytest.mark.parametrize("step", [2, 4, 6], ids=["epoch 0 batch 2", "epoch 1 batch 1", "last"])
@pytest.mark.parametrize(
    "options",
    [{}, {"raw": True}, {"cached": True}, {"workers": 1}, {"raw": True, "workers": 1}],
    ids=["Quaterion.fit", "trainer.fit", "fully cached", "workers", "trainer.fit workers"],
)
def test_resumed_inside_an_epoch_trains_on_the_rest_of_it(tmp_path, options, step):
    """every_n_train_steps: Lightning hands the loader its state back, and the sampler's
    state says how much of the epoch was trained (TrainableModel notes it at every step),
    so the resumed fit takes the epoch's remaining batches and goes on as the uninterrupted
    one (which wrote the checkpoint)."""
    straight = fit(tmp_path / "straight", EPOCHS, every_n_train_steps=2, **options)
    epoch = (step - 1) // 3
    path = tmp_path / "straight" / f"epoch={epoch}-step={step}.ckpt"
    saved = torch.load(path, weights_only=True)["quaterion_batch_order"]["loader"]  # plain data
    partial = saved["batch_sampler"]["partial"]
    assert (partial and partial["batches"]) == (None if step % 3 == 0 else step % 3)
    resumed, messages = fit_warned(tmp_path, path, **options)
    assert not messages
    assert resumed.batches == straight.batches[step:]
    torch.testing.assert_close(torch.stack(resumed.losses), torch.stack(straight.losses[step:]))


@pytest.mark.parametrize("old", [False, True], ids=["this version", "older checkpoint"])
def test_a_shuffled_loader_resumed_inside_an_epoch_warns(tmp_path, old):
    """A shuffled loader cannot replay the rest of an epoch, so the resume says that its
    batches differ (in place of Lightning's warning for loaders without state, which it no
    longer gives now that the loader is stateful), from an older checkpoint too."""
    saving = pl.callbacks.ModelCheckpoint(
        dirpath=tmp_path / "first", filename="{epoch}-{step}", save_top_k=-1, every_n_train_steps=2
    )
    first_trainer = trainer(max_epochs=1, callbacks=[saving], enable_checkpointing=True)
    Quaterion.fit(Model(), first_trainer, plain_loader())
    path = tmp_path / "first" / "epoch=0-step=2.ckpt"
    if old:
        path = strip_batch_order(path, tmp_path / "old.ckpt")
    with pytest.warns(UserWarning, match="inside epoch 0, after 2 of its batches") as caught:
        resume_trainer = trainer(max_epochs=2)
        Quaterion.fit(Model(), resume_trainer, plain_loader(), ckpt_path=str(path))
    assert resume_trainer.current_epoch == 2
    messages = [str(w.message) for w in caught if ORDER_WARNING.search(str(w.message))]
    assert (
        len(messages) == 1 and "its BatchSampler cannot replay the rest of an epoch" in messages[0]
    )


class Unnoted(Model):
    """Overrides on_train_batch_start without calling super()."""

    def on_train_batch_start(self, batch, batch_idx):
        return None


def test_an_override_that_leaves_the_sampler_unnoted_warns_inside_an_epoch(tmp_path):
    """The sampler was not told of the batches trained, so its state cannot replay the
    rest of the epoch: the resume warns instead of silently training on other batches."""
    saving = pl.callbacks.ModelCheckpoint(
        dirpath=tmp_path / "first", filename="{epoch}-{step}", save_top_k=-1, every_n_train_steps=2
    )
    first_trainer = trainer(max_epochs=1, callbacks=[saving], enable_checkpointing=True)
    Quaterion.fit(Unnoted(), first_trainer, fit_loader())
    path = str(tmp_path / "first" / "epoch=0-step=2.ckpt")
    with pytest.warns(UserWarning, match="override of on_train_batch_start must call super"):
        Quaterion.fit(Model(), trainer(max_epochs=2), fit_loader(), ckpt_path=path)


def test_trainer_fit_with_loader_workers_warns_that_the_order_starts_over(tmp_path):
    """trainer.fit builds the loader's iterator (its workers take the first batches) before
    any hook of the model sees the loader: the order cannot be restored, and it says so."""
    _, path = first_run_checkpoint(tmp_path, raw=True, workers=1)
    straight = fit(tmp_path / "straight", EPOCHS, raw=True, workers=1)
    resumed, messages = fit_warned(tmp_path, path, raw=True, workers=1)
    assert len(messages) == 1 and "worker processes took the first resumed batches" in messages[0]
    assert [b for _, b in resumed.batches] == [b for _, b in straight.batches[:6]]


@pytest.mark.parametrize("raw", [False, True], ids=["Quaterion.fit", "trainer.fit"])
def test_resuming_with_a_sampler_of_another_layout_is_refused(tmp_path, raw):
    """Its order would not fit the sampler's groups: a clear error, not other batches."""
    _, path = first_run_checkpoint(tmp_path)
    other = GroupSimilarityDataLoader(
        SAMPLES, batch_sampler=GroupCycleBatchSampler(GROUPS, batch_size=6, seed=5)
    )
    model = Model()
    with pytest.raises(ValueError, match="other batch_size than this one"):
        if raw:
            model.setup_dataloader(other)
            trainer(max_epochs=EPOCHS).fit(model, other, ckpt_path=str(path))
        else:
            Quaterion.fit(model, trainer(max_epochs=EPOCHS), other, ckpt_path=str(path))
