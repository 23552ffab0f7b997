"""Persisted cache (CacheConfig.save_dir): reuse, invalidation, corruption, safe files."""

import json
import os
import shutil

import pytest
import torch

from quaterion.train.cache import CacheConfig, CacheDirInUseError
from quaterion.train.cache import _save_dir as save_dir_module
from quaterion.train.cache._save_dir import SaveDirLock
from quaterion.train.cache._fingerprint import sample_positions
from tests.quaterion.train import helpers
from tests.quaterion.train.helpers import CountingEncoder, Model, fit_data, fit_losses


def _fit(save_dir, seed=0, n=24, val=True):
    encoder = CountingEncoder(seed=seed)
    model = Model(encoders={"default": encoder}, cache_config=CacheConfig(save_dir=save_dir))
    return encoder, fit_losses(model, *fit_data(n=n, val=val)[1])


def test_second_fit_reuses_cache_without_running_encoder(tmp_path):
    save_dir = str(tmp_path / "cache")
    first, first_losses = _fit(save_dir)
    assert first.calls == 32
    for name in ("encoders/default", "train_labels", "val_labels", "manifest.json"):
        assert os.path.isfile(os.path.join(save_dir, name)), name
    assert not [f for f in os.listdir(save_dir) if f.startswith(".tmp")]
    state = torch.load(os.path.join(save_dir, "encoders/default"), weights_only=True)
    assert state["embeddings"].shape == (32, 6)
    labels = torch.load(os.path.join(save_dir, "train_labels"), weights_only=True)
    assert labels["ids"].shape == (24,) and labels["columns"]["groups"].tolist()[:5] == [
        0,
        1,
        2,
        3,
        0,
    ]
    manifest = json.load(open(os.path.join(save_dir, "manifest.json")))
    assert manifest["loaders"]["train"]["length"] == 24
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
    train = helpers.group_loader(helpers.group_samples(n=24))
    train.set_salt("train")
    Model.load_cache(save_dir, wrapped, train, None)
    assert wrapped["default"].cache.shape == (32, 6)
    with pytest.raises(RuntimeError, match="Encoder cache was configured, but not found"):
        Model.load_cache(str(tmp_path / "nothing"), wrapped, train, None)
    assert not os.path.exists(tmp_path / "nothing")  # no lock file made where no cache is


def test_load_cache_waits_for_a_writer_of_the_directory(tmp_path, monkeypatch):
    save_dir = str(tmp_path)
    _fit(save_dir)
    model = Model(encoders={"default": CountingEncoder()}, cache_config=CacheConfig())
    wrapped = model._apply_cache_config(model.model.encoders, model.cache_config)
    train = helpers.group_loader(helpers.group_samples(n=24))
    train.set_salt("train")
    writer = SaveDirLock(save_dir)  # another holder (its own open file): exclusive
    writer.exclusive()
    monkeypatch.setattr(save_dir_module, "LOCK_WAIT_S", 0.3)
    try:
        # the writer is another lock object of this process: the error says so
        with pytest.raises(CacheDirInUseError, match="held by this process"):
            Model.load_cache(save_dir, wrapped, train, None)
    finally:
        writer.release()
    Model.load_cache(save_dir, wrapped, train, None)  # the writer is done: it loads
    assert wrapped["default"].cache.shape == (32, 6)


def test_resume_with_persisted_cache(tmp_path):
    from pytorch_lightning.callbacks import ModelCheckpoint

    save_dir, ckpt_dir = str(tmp_path / "cache"), str(tmp_path / "ckpt")

    def fit(epochs, ckpt_path=None):
        encoder = CountingEncoder()
        model = Model(encoders={"default": encoder}, cache_config=CacheConfig(save_dir=save_dir))
        checkpoint = ModelCheckpoint(dirpath=f"{ckpt_dir}_{epochs}", save_top_k=-1)
        losses = fit_losses(
            model,
            helpers.group_loader(shuffle=True),
            callbacks=[checkpoint],
            ckpt_path=ckpt_path,
            max_epochs=epochs,
            enable_checkpointing=True,
        )
        return encoder.calls, len(losses)

    assert fit(1) == (24, 3)
    checkpoint = os.path.join(f"{ckpt_dir}_1", sorted(os.listdir(f"{ckpt_dir}_1"))[-1])
    assert fit(3, ckpt_path=checkpoint) == (0, 6)


def test_second_process_does_not_run_encoder(tmp_path):
    """A fresh interpreter (another hash seed) reuses the cache this process wrote."""
    import subprocess
    import sys

    first, _ = _fit(str(tmp_path))
    assert first.calls == 32
    script = (
        "from tests.quaterion.train.test_cache_persistence import _fit;"
        f"encoder, _ = _fit({str(tmp_path)!r}); print('CALLS', encoder.calls)"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    output = subprocess.run(
        [sys.executable, "-c", script],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    assert "CALLS 0" in output


def test_crash_between_writes_keeps_the_previous_cache(tmp_path, monkeypatch):
    from quaterion.train.cache import persist

    save_dir = str(tmp_path)
    _, losses = _fit(save_dir)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing the cache")

    monkeypatch.setattr(persist, "write_json", crash)  # after encoder and label files
    with pytest.warns(UserWarning, match="encoder 'default' changed"):
        with pytest.raises(KeyboardInterrupt):
            _fit(save_dir, seed=1)
    monkeypatch.undo()
    encoder, again = _fit(save_dir)
    assert encoder.calls == 0  # the first cache, whole
    torch.testing.assert_close(again, losses)
    rebuilt, _ = _fit(save_dir, seed=1)
    assert rebuilt.calls == 32
    assert len([f for f in os.listdir(save_dir) if f.startswith(".gen-")]) == 1


def _fit_on(save_dir, samples, **config):
    encoder = CountingEncoder()
    cache = CacheConfig(save_dir=save_dir, **config)
    model = Model(encoders={"default": encoder}, cache_config=cache)
    return encoder, fit_losses(model, helpers.group_loader(samples, shuffle=True))


def test_relabelled_data_rebuilds_with_a_warning(tmp_path):
    samples = helpers.group_samples(n=24)
    _fit_on(str(tmp_path), samples)
    relabelled = [
        type(s)(obj=s.obj, group=(s.group + 1) % 4 if i < 5 else s.group)
        for i, s in enumerate(samples)
    ]
    with pytest.warns(UserWarning, match="train labels changed"):
        encoder, losses = _fit_on(str(tmp_path), relabelled)
    assert encoder.calls == 24
    uncached_model = Model(encoders={"default": CountingEncoder()})
    expected = fit_losses(uncached_model, helpers.group_loader(relabelled, shuffle=True))
    torch.testing.assert_close(losses, expected)  # the new labels


def test_content_sample_catches_replaced_data_by_default(tmp_path):
    samples = helpers.group_samples(n=24)
    replaced = [type(s)(obj=s.obj + 1, group=s.group) for s in samples]  # same length, labels
    _fit_on(str(tmp_path), samples)
    with pytest.warns(UserWarning, match=r"train content changed \(the content sample"):
        encoder, losses = _fit_on(str(tmp_path), replaced)
    assert encoder.calls == 24
    uncached = fit_losses(Model(), helpers.group_loader(replaced, shuffle=True))
    torch.testing.assert_close(losses, uncached)  # the new objects' vectors


def test_full_content_check_is_opt_in(tmp_path):
    samples = helpers.group_samples(n=80)
    outside = next(i for i in range(80) if i not in sample_positions(80))
    changed = list(samples)
    changed[outside] = type(samples[0])(obj=samples[outside].obj + 1, group=samples[outside].group)
    _fit_on(str(tmp_path / "a"), samples)
    assert _fit_on(str(tmp_path / "a"), changed)[0].calls == 0  # outside the sample: reused
    _fit_on(str(tmp_path / "b"), samples, verify_content=True)
    assert _fit_on(str(tmp_path / "b"), samples, verify_content=True)[0].calls == 0
    with pytest.warns(UserWarning, match="train content changed"):
        encoder, _ = _fit_on(str(tmp_path / "b"), changed, verify_content=True)
    assert encoder.calls == 80


def _save_by_class_method(save_dir: str, config: CacheConfig) -> None:
    """An in-memory cache set up with ``config`` on the fit data, written by ``save_cache``."""
    model = Model(encoders={"default": CountingEncoder()}, cache_config=config)
    _, (train, val) = fit_data()
    for loader in (train, val):
        model.setup_dataloader(loader)
    model.setup_cache(helpers.trainer(), train, val)
    Model.save_cache(save_dir, model.model.encoders, train, val)
    model.unwrap_cache()


def test_save_cache_class_method_writes_a_cache_a_fit_reuses(tmp_path):
    """``save_cache`` after an in-memory set-up: the labels come from one read of the
    loaders, and a fit with that save_dir runs the encoder zero times, with the losses of a
    fit that filled the cache itself."""
    save_dir = str(tmp_path / "cache")
    _save_by_class_method(save_dir, CacheConfig())
    reused, reused_losses = _fit(save_dir)
    assert reused.calls == 0
    _, filled_losses = _fit(str(tmp_path / "other"))
    torch.testing.assert_close(reused_losses, filled_losses)


@pytest.mark.parametrize("damage", ["generation deleted", "current dangles"])
def test_a_missing_generation_is_rebuilt_with_a_warning(tmp_path, damage):
    save_dir = str(tmp_path)
    _, losses = _fit(save_dir)
    current = os.path.join(save_dir, "current")
    if damage == "generation deleted":
        shutil.rmtree(os.path.join(save_dir, os.readlink(current)))
    else:
        os.remove(current)
        os.symlink(".gen-missing", current)
    with pytest.warns(UserWarning, match="will be rebuilt: manifest.json is missing"):
        encoder, rebuilt = _fit(save_dir)
    assert encoder.calls == 32
    torch.testing.assert_close(rebuilt, losses)
    assert _fit(save_dir)[0].calls == 0


def test_what_a_killed_run_left_is_removed_when_the_cache_is_reused(tmp_path):
    """A run killed mid-save leaves a generation without manifest, one killed mid-fill its
    fill files (see test_save_dir for real kills): the next run that reuses or rebuilds the
    cache removes them, and never another cache nested in save_dir, whatever its name."""
    save_dir = tmp_path / "cache"
    _, losses = _fit(str(save_dir))
    _fit(str(save_dir / ".gen-nested"))  # a cache of the user's, named like a generation
    half = save_dir / ".gen-killed" / "encoders"
    half.mkdir(parents=True)
    (half / "default").write_bytes(b"half-written")
    (save_dir / ".fill" / "default").mkdir(parents=True)
    (save_dir / ".fill" / "default" / "rank1.rows").write_bytes(b"\0" * 96)
    encoder, again = _fit(str(save_dir))
    assert encoder.calls == 0
    torch.testing.assert_close(again, losses)
    generations = sorted(f for f in os.listdir(save_dir) if f.startswith(".gen-"))
    assert generations == sorted([os.readlink(save_dir / "current"), ".gen-nested"])
    assert not os.path.exists(save_dir / ".fill")
    assert _fit(str(save_dir / ".gen-nested"))[0].calls == 0
    (save_dir / ".fill" / "default").mkdir(parents=True)
    (save_dir / ".fill" / "default" / "rank1.rows").write_bytes(b"\0" * 96)
    _fit(str(save_dir), seed=1)  # a rebuild removes them too, and keeps the nested cache
    assert not os.path.exists(save_dir / ".fill")
    assert _fit(str(save_dir / ".gen-nested"))[0].calls == 0


class ShiftedEncoder(CountingEncoder):
    """Adds a constant kept in a non-persistent buffer (not in its ``state_dict``), as image
    encoders keep their normalisation constants."""

    def __init__(self, shift: float):
        super().__init__()
        self.register_buffer("shift", torch.full((helpers.EMB_DIM,), shift), persistent=False)

    def forward(self, batch):
        return super().forward(batch) + self.shift


def test_a_changed_non_persistent_buffer_rebuilds(tmp_path):
    def fit(shift):
        encoder = ShiftedEncoder(shift)
        config = CacheConfig(save_dir=str(tmp_path))
        return encoder, fit_losses(Model({"default": encoder}, config), *fit_data()[1])

    fit(0.0)
    with pytest.warns(UserWarning, match="encoder 'default' changed .*state_sha256"):
        encoder, losses = fit(1.0)
    assert encoder.calls == 32
    uncached = ShiftedEncoder(1.0)
    torch.testing.assert_close(losses, fit_losses(Model({"default": uncached}), *fit_data()[1]))
    assert fit(1.0)[0].calls == 0


class EditedEncoder(CountingEncoder):
    """Its ``forward`` is replaced between runs, weights unchanged (code edited by a user)."""


def test_an_edited_forward_rebuilds(tmp_path, monkeypatch):
    def fit():
        encoder = EditedEncoder()
        config = CacheConfig(save_dir=str(tmp_path))
        return encoder, fit_losses(Model({"default": encoder}, config), *fit_data()[1])

    fit()
    assert fit()[0].calls == 0  # the same code: reused
    monkeypatch.setattr(
        EditedEncoder, "forward", lambda self, batch: 2 * super(EditedEncoder, self).forward(batch)
    )
    with pytest.warns(UserWarning, match="encoder 'default' changed .*code"):
        encoder, losses = fit()
    assert encoder.calls == 32
    torch.testing.assert_close(
        losses, fit_losses(Model({"default": EditedEncoder()}), *fit_data()[1])
    )


def _key_of(obj):
    """A custom cache key: the object's values (equal objects share a row)."""
    return tuple(round(float(x), 6) for x in obj)


def test_save_cache_records_the_key_extractors_the_cache_was_filled_with(tmp_path):
    """A cache filled with custom keys and written by ``save_cache`` is reused by a fit with
    those keys and rebuilt (with the reason) by a fit with the default keys."""
    save_dir = str(tmp_path / "cache")
    _save_by_class_method(save_dir, CacheConfig(key_extractors=_key_of))

    def fit(**config):
        encoder = CountingEncoder()
        cached = Model(
            encoders={"default": encoder}, cache_config=CacheConfig(save_dir=save_dir, **config)
        )
        return encoder, fit_losses(cached, *fit_data()[1])

    assert fit(key_extractors=_key_of)[0].calls == 0
    with pytest.warns(UserWarning, match="key extractors changed"):
        encoder, losses = fit()
    assert encoder.calls == 32
    torch.testing.assert_close(
        losses, fit_losses(Model({"default": CountingEncoder()}), *fit_data()[1])
    )
