"""Temp directories of saves that died are removed by the next save or load of the same target,
never one that a running save (another process, or another lock holder) still writes.

Real child processes write a servable and block mid-write until the test lets them go, or are
SIGKILLed there (ONNX exports: tests/quaterion_models/onnx/test_abandoned_export_temps.py)."""

import fcntl
import os
import time
from pathlib import Path

import pytest
import torch

from quaterion_models import SimilarityModel
from quaterion_models.utils import directory_swap
from tests.quaterion_models.blocked_saves import Writer, gated_model, temp_dirs


def _assert_loads_as(target: Path, gate: float) -> None:
    loaded, expected = SimilarityModel.load(str(target)), gated_model(gate)
    x = torch.rand(3, 5)
    want = expected.encoders["default"](x) * torch.tanh(torch.tensor(gate))
    torch.testing.assert_close(loaded.encode(list(x), to_numpy=False), want)


@pytest.mark.parametrize("then", ["load", "save"])
def test_a_save_killed_while_writing_is_cleaned_up_by_the_next_load_or_save(tmp_path, then):
    models = tmp_path / "models"
    target = models / "servable"
    gated_model(0.25).save(str(target))
    (target / "notes.txt").write_text("mine")
    writer = Writer(tmp_path, "servable", target)
    try:
        [temp] = temp_dirs(models)
        assert (temp / directory_swap.IN_PROGRESS_FILE).is_file()
        assert (temp / "encoders").is_dir()
        writer.kill()
    finally:
        writer.close()
    assert temp.is_dir()  # the kill left it behind

    if then == "load":
        _assert_loads_as(target, 0.25)
    else:
        gated_model(0.5).save(str(target))
        _assert_loads_as(target, 0.5)
    assert sorted(p.name for p in models.iterdir()) == ["servable"]
    assert (target / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("other", ["load", "save"])
def test_a_running_save_keeps_its_temp_directory_while_another_process_saves_or_loads(
    tmp_path, other
):
    models = tmp_path / "models"
    target = models / "servable"
    gated_model(0.25).save(str(target))
    writer = Writer(tmp_path, "servable", target)
    try:
        [temp] = temp_dirs(models)
        if other == "load":
            _assert_loads_as(target, 0.25)
        else:
            gated_model(0.5).save(str(target))
            _assert_loads_as(target, 0.5)
        assert temp_dirs(models) == [temp] and (temp / "encoders").is_dir()
        writer.finish()
    finally:
        writer.close()
    _assert_loads_as(target, 0.75)  # the blocked save finished intact, swapped in last
    assert sorted(p.name for p in models.iterdir()) == ["servable"]


def _age(root: Path, seconds: float) -> None:
    when = time.time() - seconds
    for path in [root, *root.rglob("*")]:
        os.utime(path, (when, when))


def _kept_after_a_load(target: Path, temp: Path) -> bool:
    _assert_loads_as(target, 0.25)
    return temp.is_dir()


def test_a_temp_directory_without_a_lock_file_is_removed_only_when_long_unchanged(tmp_path):
    """An older version's save cannot be told from a dead one: only its age decides."""
    target = tmp_path / "m"
    gated_model(0.25).save(str(target))
    legacy = tmp_path / ".m.tmp-0123"
    (legacy / "encoders").mkdir(parents=True)
    (legacy / "encoders" / "weights.pt").write_bytes(b"partial")
    _age(legacy, directory_swap.ABANDONED_AGE_S - 60)
    assert _kept_after_a_load(target, legacy)
    _age(legacy, directory_swap.ABANDONED_AGE_S + 60)
    os.utime(legacy / "encoders" / "weights.pt")  # still being written a moment ago
    assert _kept_after_a_load(target, legacy)
    _age(legacy, directory_swap.ABANDONED_AGE_S + 60)
    assert not _kept_after_a_load(target, legacy)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_a_held_lock_file_keeps_a_temp_directory_however_old(tmp_path):
    target = tmp_path / "m"
    gated_model(0.25).save(str(target))
    temp = tmp_path / ".m.tmp-4567"
    (temp / "head").mkdir(parents=True)
    holder = os.open(temp / directory_swap.IN_PROGRESS_FILE, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)  # another open file description: another writer
        _age(temp, directory_swap.ABANDONED_AGE_S * 10)
        assert _kept_after_a_load(target, temp)
    finally:
        os.close(holder)
    assert not _kept_after_a_load(target, temp)  # its writer is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_a_complete_temp_directory_is_kept_while_it_is_the_onlygated_model(tmp_path):
    """No target and a complete dead save: it is restored, not removed."""
    target = tmp_path / "m"
    gated_model(0.75).save(str(target))
    temp = tmp_path / ".m.tmp-89ab"
    os.rename(target, temp)
    (temp / directory_swap.IN_PROGRESS_FILE).touch()  # its writer died (nobody holds it)
    directory_swap.remove_abandoned_temps(target)
    assert temp.is_dir()
    _assert_loads_as(target, 0.75)  # recovery renames it into place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
