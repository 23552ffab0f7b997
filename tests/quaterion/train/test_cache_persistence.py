"""Persisted cache (CacheConfig.save_dir): reuse, invalidation, corruption, safe files."""

import json
import os

import pytest
import torch

from quaterion import Quaterion
from quaterion.train.cache import CacheConfig
from tests.quaterion.train.helpers import (
    CountingEncoder,
    LossRecorder,
    Model,
    group_loader,
    group_samples,
    trainer,
)


def _fit(save_dir, seed=0, n=24, val=True):
    encoder = CountingEncoder(seed=seed)
    model = Model(encoders={"default": encoder}, cache_config=CacheConfig(save_dir=save_dir))
    recorder = LossRecorder()
    torch.manual_seed(0)
    Quaterion.fit(
        model,
        trainer(max_epochs=1, callbacks=[recorder]),
        group_loader(group_samples(n=n), shuffle=True),
        group_loader(group_samples(n=8, seed=3)) if val else None,
    )
    return encoder, torch.stack(recorder.losses)


def test_second_fit_reuses_cache_without_running_encoder(tmp_path):
    save_dir = str(tmp_path / "cache")
    first, first_losses = _fit(save_dir)
    assert first.calls == 32
    for name in ("encoders/default", "train_labels", "val_labels", "manifest.json"):
        assert os.path.isfile(os.path.join(save_dir, name)), name
    assert not [f for f in os.listdir(save_dir) if f.startswith(".tmp")]
    state = torch.load(os.path.join(save_dir, "encoders/default"), weights_only=True)
    assert state["embeddings"].shape == (32, 6)
    assert torch.load(os.path.join(save_dir, "train_labels"), weights_only=True)["ids"]
    manifest = json.load(open(os.path.join(save_dir, "manifest.json")))
    assert manifest["loaders"]["train"]["length"] == 24 and manifest["full_cache"] is True
    assert manifest["encoders"]["default"]["fingerprint"]["class"].endswith("CountingEncoder")

    second, second_losses = _fit(save_dir)
    assert second.calls == 0
    torch.testing.assert_close(second_losses, first_losses)


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"seed": 1}, "encoder 'default' changed"),
        ({"n": 20}, "train data changed"),
        ({"val": False}, None),
    ],
)
def test_mismatched_cache_is_rebuilt_with_reason(tmp_path, change, reason):
    save_dir = str(tmp_path)
    _fit(save_dir)
    if reason is None:  # a cache holding more splits than needed still serves
        encoder, _ = _fit(save_dir, **change)
        assert encoder.calls == 0
        return
    with pytest.warns(UserWarning, match=f"will be rebuilt: {reason}"):
        encoder, _ = _fit(save_dir, **change)
    assert encoder.calls > 0
    again, _ = _fit(save_dir, **change)
    assert again.calls == 0


@pytest.mark.parametrize("target", ["encoders/default", "train_labels"])
def test_truncated_file_is_detected_and_rebuilt(tmp_path, target):
    save_dir = str(tmp_path)
    _, losses = _fit(save_dir)
    path = os.path.join(save_dir, target)
    size = os.path.getsize(path)
    with open(path, "r+b") as file:
        file.truncate(size // 2)
    with pytest.warns(UserWarning, match="truncated or corrupt"):
        encoder, rebuilt_losses = _fit(save_dir)
    assert encoder.calls == 32
    torch.testing.assert_close(rebuilt_losses, losses)


def test_missing_manifest_with_old_files_is_rebuilt(tmp_path):
    save_dir = str(tmp_path)
    _fit(save_dir)
    os.remove(os.path.join(save_dir, "manifest.json"))
    with pytest.warns(UserWarning, match="manifest.json is missing"):
        encoder, _ = _fit(save_dir)
    assert encoder.calls == 32


def test_check_and_load_cache_class_methods(tmp_path):
    save_dir = str(tmp_path)
    _fit(save_dir)
    model = Model(encoders={"default": CountingEncoder()}, cache_config=CacheConfig())
    wrapped = model._apply_cache_config(model.model.encoders, model.cache_config)
    assert Model.check_encoders_persisted(save_dir, wrapped)
    assert not Model.check_encoders_persisted(None, wrapped)
    assert not Model.check_encoders_persisted(str(tmp_path / "nothing"), wrapped)
    assert Model._encoders_cache_path(save_dir) == os.path.join(save_dir, "encoders")
    assert Model._encoders_cache_path("") is None
    train = group_loader(group_samples(n=24))
    train.set_salt("train")
    Model.load_cache(save_dir, wrapped, train, None)
    assert wrapped["default"].cache.shape == (32, 6)
    with pytest.raises(RuntimeError, match="Encoder cache was configured, but not found"):
        Model.load_cache(str(tmp_path / "nothing"), wrapped, train, None)


def test_resume_with_persisted_cache(tmp_path):
    from pytorch_lightning.callbacks import ModelCheckpoint

    save_dir, ckpt_dir = str(tmp_path / "cache"), str(tmp_path / "ckpt")

    def fit(epochs, ckpt_path=None):
        encoder = CountingEncoder()
        model = Model(encoders={"default": encoder}, cache_config=CacheConfig(save_dir=save_dir))
        recorder = LossRecorder()
        checkpoint = ModelCheckpoint(dirpath=f"{ckpt_dir}_{epochs}", save_top_k=-1)
        fit_trainer = trainer(
            max_epochs=epochs, enable_checkpointing=True, callbacks=[checkpoint, recorder]
        )
        Quaterion.fit(model, fit_trainer, group_loader(shuffle=True), ckpt_path=ckpt_path)
        return encoder.calls, len(recorder.losses)

    assert fit(1) == (24, 3)
    checkpoint = os.path.join(f"{ckpt_dir}_1", sorted(os.listdir(f"{ckpt_dir}_1"))[-1])
    assert fit(3, ckpt_path=checkpoint) == (0, 6)


@pytest.mark.slow
def test_second_process_does_not_run_encoder(tmp_path):
    import subprocess
    import sys

    script = (
        "import sys; from tests.quaterion.train.test_cache_persistence import _fit;"
        f"encoder, _ = _fit({str(tmp_path)!r}); print('CALLS', encoder.calls)"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    outputs = [
        subprocess.run(
            [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, check=True
        ).stdout
        for _ in range(2)
    ]
    assert "CALLS 32" in outputs[0] and "CALLS 0" in outputs[1]
