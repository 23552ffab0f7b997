"""Cached augmented views: ``CacheConfig(views=K)``."""

import hashlib
import json
import os

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from quaterion import Quaterion
from quaterion.dataset import GroupSimilarityDataLoader, SimilarityGroupSample
from quaterion.train.cache import CacheConfig, CacheType
from tests.quaterion.train.helpers import (
    IN_DIM,
    CountingEncoder,
    Model,
    fit_losses,
    group_samples,
    trainer,
)

N, K, EPOCHS = 12, 3, 4


class Jittered(torch.utils.data.Dataset):
    """Group samples with a random jitter drawn from torch's global generator at each read
    (a random augmentation)."""

    def __init__(self, n: int = N):
        self.samples = group_samples(n)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> SimilarityGroupSample:
        sample = self.samples[index]
        return SimilarityGroupSample(obj=sample.obj + torch.randn(IN_DIM), group=sample.group)


def _reference(encoder: CountingEncoder, dataset: Jittered, views: int) -> torch.Tensor:
    """``(views, n, d)``: the encoder over view ``v`` of item ``i``, read under the documented
    seed (the first 4 bytes, little-endian, of SHA-256 of ``quaterion-cache-views:v:i``)."""
    out = torch.empty(views, len(dataset), encoder.embedding_size)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        for view in range(views):
            for i in range(len(dataset)):
                text = f"quaterion-cache-views:{view}:{i}".encode()
                torch.manual_seed(int.from_bytes(hashlib.sha256(text).digest()[:4], "little"))
                out[view, i] = encoder.linear(dataset[i].obj)
    return out


class ServedRecorder(pl.Callback):
    """Per training epoch (``trainer.current_epoch``): the store's output for every batch."""

    def __init__(self):
        self.served = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        with torch.no_grad():
            rows = pl_module.model.encoders["default"](batch[0]["data"]["default"])
        self.served.setdefault(trainer.current_epoch, []).append(rows.float())


def _served_views(config: CacheConfig, epochs: int = EPOCHS, ckpt_path=None, **trainer_kwargs):
    """Fit over :class:`Jittered` with the cache set up (fully served) until epoch
    ``epochs``: per epoch run here, the view (among the reference's) that each position was
    served; and the encoder's call count."""
    encoder = CountingEncoder()
    model = Model(encoders={"default": encoder}, cache_config=config)
    dataset = Jittered()
    loader = GroupSimilarityDataLoader(dataset, batch_size=5)
    recorder = ServedRecorder()
    fit_trainer = trainer(
        max_epochs=epochs,
        callbacks=[recorder, *trainer_kwargs.pop("callbacks", [])],
        **trainer_kwargs,
    )
    Quaterion.fit(model, fit_trainer, loader, ckpt_path=ckpt_path)
    reference = _reference(encoder, dataset, config.views)
    chosen = {}
    for epoch, batches in recorder.served.items():
        served = torch.cat(batches)
        distance = (served[None] - reference.to(served.dtype)).abs().amax(dim=2)  # (views, n)
        tolerance = 1e-5 if config.dtype is None else 1e-2 * reference.abs().max()
        assert (distance.min(dim=0).values <= tolerance).all()  # one of its K encodings
        chosen[epoch] = distance.argmin(dim=0).tolist()
    return chosen, encoder.calls


@pytest.mark.parametrize(
    "cache_type, dtype",
    [(CacheType.AUTO, None), (CacheType.DISK, None), (CacheType.CPU, torch.float16)],
)
def test_each_epoch_serves_one_of_each_objects_k_seeded_encodings(tmp_path, cache_type, dtype):
    save_dir = str(tmp_path / "cache") if cache_type == CacheType.DISK else None
    config = CacheConfig(cache_type, views=K, save_dir=save_dir, dtype=dtype)
    chosen, calls = _served_views(config)
    assert calls == K * N
    assert sorted(chosen) == list(range(EPOCHS))
    assert len({view for epoch in chosen.values() for view in epoch}) == K  # all are served
    assert len({tuple(epoch) for epoch in chosen.values()}) > 1  # it changes between epochs
    again, _ = _served_views(CacheConfig(views=K))
    assert again == chosen  # the same choice in another run (and another store kind)


def test_one_view_keeps_the_manifest_of_before(tmp_path):
    save_dir = str(tmp_path / "cache")
    encoder, _ = _fit(save_dir, 1)
    assert encoder.calls == N + 8
    with open(os.path.join(save_dir, "manifest.json")) as file:
        manifest = json.load(file)
    assert "views" not in manifest
    assert manifest["encoders"]["default"]["rows"] == N + 8


def test_views_need_a_fit_served_from_the_store():
    encoders = {"frozen": CountingEncoder(), "trainable": CountingEncoder(trainable=True)}
    model = Model(encoders=encoders, cache_config=CacheConfig(views=2))
    loader = GroupSimilarityDataLoader(Jittered(), batch_size=5)
    model.setup_dataloader(loader)
    with pytest.raises(ValueError, match=r"views=2.*every encoder frozen and cached"):
        model.cache_loaders(trainer(), loader, None)


def test_the_views_error_comes_before_save_dir_is_touched(tmp_path):
    save_dir = tmp_path / "cache"
    config = CacheConfig(views=2, save_dir=str(save_dir), key_extractors=lambda obj: repr(obj))
    model = Model(encoders={"default": CountingEncoder()}, cache_config=config)
    loader = GroupSimilarityDataLoader(Jittered(), batch_size=5)
    model.setup_dataloader(loader)
    with pytest.raises(ValueError, match=r"views=2.*no key_extractors"):
        model.cache_loaders(trainer(), loader, None)
    assert not save_dir.exists()


@pytest.mark.parametrize("views", [0, 1.5])
def test_views_must_be_a_positive_int(views):
    with pytest.raises((TypeError, ValueError), match="views"):
        CacheConfig(views=views)


def _fit(save_dir, views):
    encoder = CountingEncoder()
    config = CacheConfig(views=views, save_dir=save_dir)
    model = Model(encoders={"default": encoder}, cache_config=config)
    train = GroupSimilarityDataLoader(Jittered(), batch_size=6, shuffle=True)
    val = GroupSimilarityDataLoader(Jittered(8), batch_size=4)
    return encoder, fit_losses(model, train, val, max_epochs=3)


def test_persisted_views_reload_and_a_views_change_rebuilds(tmp_path):
    save_dir = str(tmp_path / "cache")
    first, losses = _fit(save_dir, K)
    assert first.calls == K * N + 8  # validation data is read once
    assert torch.isfinite(losses).all() and len(losses) == 3 * 2
    again, again_losses = _fit(save_dir, K)
    assert again.calls == 0
    torch.testing.assert_close(again_losses, losses)
    with pytest.warns(UserWarning, match=r"views changed \(saved 3, now 2\)"):
        changed, _ = _fit(save_dir, 2)
    assert changed.calls == 2 * N + 8


def test_a_persisted_cache_of_augmented_data_is_reused_whatever_the_random_state(tmp_path):
    save_dir = str(tmp_path / "cache")
    for seed, expected_calls in ((1, K * N), (2, 0)):
        torch.manual_seed(seed)  # the content sample must not depend on it
        encoder = CountingEncoder()
        config = CacheConfig(views=K, save_dir=save_dir)
        model = Model(encoders={"default": encoder}, cache_config=config)
        loader = GroupSimilarityDataLoader(Jittered(), batch_size=5)
        model.setup_dataloader(loader)
        model.cache_loaders(trainer(), loader, None)
        assert encoder.calls == expected_calls
        model.unwrap_cache()


def test_a_resumed_fit_serves_the_views_of_an_uninterrupted_one(tmp_path):
    config = CacheConfig(views=K)
    whole, _ = _served_views(config, EPOCHS)
    checkpoints = ModelCheckpoint(dirpath=str(tmp_path), save_last=True)
    first, _ = _served_views(config, 2, callbacks=[checkpoints], enable_checkpointing=True)
    resumed, _ = _served_views(config, EPOCHS, ckpt_path=str(tmp_path / "last.ckpt"))
    assert sorted(first) == [0, 1] and sorted(resumed) == [2, 3]
    assert {**first, **resumed} == whole
    assert whole[2] != whole[0] or whole[3] != whole[1]  # a restarted count would differ
