"""A loader whose batch sampler keeps no state but draws the same batches whenever an epoch
is iterated again (``shuffle=False``, or a ``DistributedSampler`` as DDP puts in) resumes
inside an epoch on the rest of that epoch: a fit stopped after ``STOP`` steps and resumed
from that step's checkpoint trains on the batches, with the losses and final weights, of an
uninterrupted fit (independent reference: the uninterrupted fit itself)."""

import warnings

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch.testing import assert_close
from torch.utils.data import DistributedSampler

from quaterion import Quaterion
from quaterion.dataset import (
    GroupCycleBatchSampler,
    GroupSimilarityDataLoader,
    SimilarityGroupSample,
)
from quaterion.train.batch_order import restore_order
from quaterion.train.cache import CacheConfig, CacheType
from tests.quaterion.train.helpers import CountingEncoder, Model, group_samples, trainer
from tests.quaterion.train.test_resume_batch_order import ORDER_WARNING

EPOCHS, STOP = 3, 6  # 4 batches an epoch: stopped after batch 1 of epoch 1
SAMPLES = group_samples(32, groups=4)
for _index, _sample in enumerate(SAMPLES):
    _sample.obj[0] = _index  # a batch of raw records names its dataset indices


class Recording(Model):
    """Records each training batch's dataset indices (raw records) and loss; ``noisy``: the
    loss draws from torch's random stream (as dropout would)."""

    def __init__(self, cached: bool, noisy: bool = False):
        self.batches, self.losses, self.noisy = [], [], noisy
        cache = CacheConfig(CacheType.CPU) if cached else None
        encoder = CountingEncoder(trainable=not cached)
        super().__init__(encoders={"default": encoder}, cache_config=cache, lr=0.1)

    def training_step(self, batch, batch_idx, **kwargs):
        data = batch[0]["data"]["default"]
        if isinstance(data, torch.Tensor) and data.is_floating_point():  # raw, not store rows
            self.batches.append(data[:, 0].round().long().tolist())
        loss = super().training_step(batch, batch_idx, **kwargs)
        if self.noisy:
            loss = loss * (1 + torch.rand(()))
        self.losses.append(loss.detach().clone())
        return loss


class Augmented(torch.utils.data.Dataset):
    """``SAMPLES`` with uniform noise drawn from torch's random stream at every read (a
    random transform), except feature 0, the record's index."""

    def __len__(self) -> int:
        return len(SAMPLES)

    def __getitem__(self, index: int):
        sample = SAMPLES[index]
        noise = torch.rand(sample.obj.shape)
        noise[0] = 0
        return SimilarityGroupSample(obj=sample.obj + noise, group=sample.group)


def loader(kind: str, workers: int = 0) -> GroupSimilarityDataLoader:
    if workers:  # random transforms, read in a worker process
        return GroupSimilarityDataLoader(Augmented(), batch_size=8, num_workers=workers)
    if kind == "group cycle":
        groups = [sample.group for sample in SAMPLES]
        sampler = GroupCycleBatchSampler(groups, batch_size=8, seed=3)
        return GroupSimilarityDataLoader(SAMPLES, batch_sampler=sampler)
    if kind == "distributed sampler":  # rank 1 of 2, shuffled by seed and epoch
        sampler = DistributedSampler(SAMPLES, num_replicas=2, rank=1, shuffle=True, seed=4)
        return GroupSimilarityDataLoader(SAMPLES, batch_size=4, sampler=sampler)
    return GroupSimilarityDataLoader(SAMPLES, batch_size=8, shuffle=False)


def fit(directory, kind, cached, max_steps=-1, ckpt_path=None, noisy=False, workers=0) -> Recording:
    pl.seed_everything(2, verbose=False)
    model = Recording(cached, noisy)
    every_step = ModelCheckpoint(dirpath=directory, every_n_train_steps=1, save_top_k=-1)
    fit_trainer = trainer(
        max_epochs=EPOCHS, max_steps=max_steps, enable_checkpointing=True, callbacks=[every_step]
    )
    Quaterion.fit(model, fit_trainer, loader(kind, workers), ckpt_path=ckpt_path)
    return model


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind, cached",
    [("shuffle=False", False), ("distributed sampler", False), ("shuffle=False", True)],
    ids=["shuffle=False", "DistributedSampler", "fully cached"],
)
def test_resumed_inside_an_epoch_trains_on_the_rest_of_it(tmp_path, kind, cached):
    uninterrupted = fit(tmp_path / "a", kind, cached)
    stopped = fit(tmp_path / "b", kind, cached, max_steps=STOP)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = tmp_path / "b" / f"epoch=1-step={STOP}.ckpt"
        resumed = fit(tmp_path / "c", kind, cached, ckpt_path=str(path))
    assert not [w for w in caught if ORDER_WARNING.search(str(w.message))]
    assert resumed.batches == uninterrupted.batches[STOP:]
    assert stopped.batches == uninterrupted.batches[:STOP]
    assert len(resumed.losses) == len(uninterrupted.losses) - STOP
    assert_close(torch.stack(stopped.losses + resumed.losses), torch.stack(uninterrupted.losses))
    for got, expected in zip(resumed.parameters(), uninterrupted.parameters()):
        assert_close(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind, workers",
    [("shuffle=False", 0), ("group cycle", 0), ("shuffle=False", 1)],
    ids=["shuffle=False", "GroupCycleBatchSampler", "random transforms in a worker"],
)
def test_a_random_stream_resumed_inside_an_epoch_goes_on_as_uninterrupted(tmp_path, kind, workers):
    # the uninterrupted fit drew the epoch's loader seed (the workers' seeds) from the
    # epoch's start state, and read the batches a replaying loader skips, before the
    # checkpoint's state was taken: the resumed fit does both from the same states
    options = {"noisy": True, "workers": workers}
    uninterrupted = fit(tmp_path / "a", kind, False, **options)
    stopped = fit(tmp_path / "b", kind, False, max_steps=STOP, **options)
    path = str(tmp_path / "b" / f"epoch=1-step={STOP}.ckpt")
    resumed = fit(tmp_path / "c", kind, False, ckpt_path=path, **options)
    if workers:
        assert resumed.batches == uninterrupted.batches[STOP:]  # noise: not whole numbers
    assert_close(torch.stack(stopped.losses + resumed.losses), torch.stack(uninterrupted.losses))
    for got, expected in zip(resumed.parameters(), uninterrupted.parameters()):
        assert_close(got, expected, rtol=1e-5, atol=1e-6)


def indices(batches) -> list:
    return [batch[1][0].round().long().tolist() for batch in batches]


def test_a_loaded_state_skips_the_batches_trained_once():
    source = loader("distributed sampler")
    source.sampler.set_epoch(3)
    source.note_batches_trained(2)
    state = source.state_dict()
    assert state == {"batch_sampler": None, "batches_trained": 2, "sampler_epoch": 3}
    target = loader("distributed sampler")
    target.load_state_dict(state)
    whole = indices(source)  # epoch 3's order, as the source draws it
    assert indices(target) == whole[2:]
    assert indices(target) == whole  # the next iteration is whole again


def test_a_state_with_batches_trained_warns_on_a_loader_that_cannot_replay():
    source = loader("shuffle=False")
    source.note_batches_trained(1)
    shuffled = GroupSimilarityDataLoader(SAMPLES, batch_size=8, shuffle=True)
    with pytest.warns(UserWarning, match="after 1 batches of an epoch.*cannot replay"):
        shuffled.load_state_dict(source.state_dict())
    assert len(indices(shuffled)) == 4


def test_the_loader_given_to_the_fit_is_not_told_to_skip_batches():
    # under DDP Lightning iterates a copy of it and hands the copy the batches trained
    source = loader("shuffle=False")
    source.note_batches_trained(3)
    target = loader("shuffle=False")
    restore_order({"loader": source.state_dict(), "replays_epoch": True}, target)
    assert len(indices(target)) == 4


def test_a_fit_stopped_inside_an_epoch_leaves_no_progress_in_the_loader(tmp_path):
    train = loader("shuffle=False")
    Quaterion.fit(Recording(cached=False), trainer(max_epochs=EPOCHS, max_steps=STOP), train)
    # a later state of it, or a resume from one, must not skip batches of a whole epoch
    assert train.state_dict() == {"batch_sampler": None}
    assert len(list(train)) == 4


@pytest.mark.slow
def test_a_checkpoint_written_inside_a_gradient_accumulation_warns(tmp_path):
    # validation after batch 3 with accumulate_grad_batches=2 writes a checkpoint holding
    # one optimizer step; the gradient of batch 3, accumulated but not applied, is lost
    def fit_accumulating(directory, max_steps=-1, ckpt_path=None):
        pl.seed_everything(0, verbose=False)
        model = Recording(cached=False)
        on_validation = ModelCheckpoint(dirpath=directory, save_top_k=-1)
        options = dict(accumulate_grad_batches=2, val_check_interval=3, max_steps=max_steps)
        fit_trainer = trainer(
            max_epochs=1, enable_checkpointing=True, callbacks=[on_validation], **options
        )
        samples = group_samples(48, groups=4)
        train = GroupSimilarityDataLoader(samples, batch_size=8)
        val = GroupSimilarityDataLoader(group_samples(8, groups=4), batch_size=8)
        Quaterion.fit(model, fit_trainer, train, val, ckpt_path=ckpt_path)
        return model

    uninterrupted = fit_accumulating(tmp_path / "a")
    fit_accumulating(tmp_path / "b", max_steps=2)
    path = str(tmp_path / "b" / "epoch=0-step=1.ckpt")  # written after batch 3
    with pytest.warns(UserWarning, match="inside a gradient accumulation") as caught:
        resumed = fit_accumulating(tmp_path / "c", ckpt_path=path)
    message = next(str(w.message) for w in caught if "accumulation" in str(w.message))
    assert "after batch 3 of epoch 0" in message and "(1 of them taken)" in message
    assert len(resumed.losses) == len(uninterrupted.losses) - 3
    # what the warning says: the weights differ from the uninterrupted fit's
    assert any(
        not torch.allclose(got, expected)
        for got, expected in zip(resumed.parameters(), uninterrupted.parameters())
    )


@pytest.mark.slow
def test_a_group_cycle_sampler_resumed_inside_an_epoch_with_workers_warns(tmp_path):
    groups = [sample.group for sample in SAMPLES]

    def fit_with_workers(directory, max_steps=-1, ckpt_path=None):
        model = Recording(cached=False)
        sampler = GroupCycleBatchSampler(groups, batch_size=8, seed=3)
        train = GroupSimilarityDataLoader(Augmented(), batch_sampler=sampler, num_workers=1)
        every_step = ModelCheckpoint(dirpath=directory, every_n_train_steps=1, save_top_k=-1)
        options = dict(max_steps=max_steps, enable_checkpointing=True, callbacks=[every_step])
        Quaterion.fit(model, trainer(max_epochs=2, **options), train, ckpt_path=ckpt_path)

    fit_with_workers(tmp_path / "b", max_steps=STOP)
    with pytest.warns(UserWarning, match="workers start their random streams at the first"):
        fit_with_workers(
            tmp_path / "c", ckpt_path=str(tmp_path / "b" / f"epoch=1-step={STOP}.ckpt")
        )
