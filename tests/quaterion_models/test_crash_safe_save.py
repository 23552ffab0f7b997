"""Saves survive a crash at any instant: a real child process is SIGKILLed inside the swap of
``SimilarityModel.save`` and ``load`` must return the last complete save. Plus ``atomic_write``."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from quaterion_models import SimilarityModel
from quaterion_models.heads import GatedHead
from quaterion_models.utils import atomic_write
from tests.quaterion_models.toy_encoders import LinearEncoder

REPO_ROOT = Path(__file__).resolve().parents[2]

# The child saves a second version over ``target`` and blocks forever inside the os.rename
# call chosen by ``stop_at``; the parent kills it there. Only the public os.rename is patched.
CHILD = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import torch
    from quaterion_models import SimilarityModel
    from quaterion_models.heads import GatedHead
    from tests.quaterion_models.toy_encoders import LinearEncoder

    target, ready, stop_at = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    real_rename = os.rename

    def blocking_rename(src, dst):
        src, dst = Path(src), Path(dst)
        stop = (
            (stop_at == "new-into-place" and dst == target and ".tmp-" in src.name)
            or (stop_at == "user-files" and dst == target / "notes.txt")
        )
        if stop:
            ready.write_text(stop_at)
            time.sleep(600)
        return real_rename(src, dst)

    os.rename = blocking_rename
    torch.manual_seed(1)
    model = SimilarityModel(encoders=LinearEncoder(5, 4), head=GatedHead(4))
    with torch.no_grad():
        model.head.gates.fill_(0.25)
    model.save(str(target))
    """
)


def _kill_child_inside_save(target: Path, stop_at: str) -> None:
    ready = target.parent / "ready"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(target), str(ready), stop_at], cwd=REPO_ROOT, env=env
    )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert child.poll() is None, f"child exited early with {child.returncode}"
            assert time.monotonic() < deadline, "child never reached the swap"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=30)
    ready.unlink()


@pytest.mark.parametrize("stop_at", ["new-into-place", "user-files"])
def test_kill_inside_the_swap_keeps_the_last_complete_save(tmp_path, stop_at):
    target = tmp_path / "servable"
    v1 = SimilarityModel(encoders=LinearEncoder(5, 4), head=GatedHead(4))
    v1.save(str(target))
    (target / "notes.txt").write_text("user notes")
    _kill_child_inside_save(target, stop_at)

    hidden = sorted(p.name.split("-")[0] for p in tmp_path.iterdir() if p.name.startswith("."))
    if stop_at == "new-into-place":  # the state the issue describes: no model at the path
        assert not target.exists() and hidden == [".servable.old", ".servable.tmp"]
    else:
        assert (target / "config.json").is_file() and hidden == [".servable.old"]

    loaded = SimilarityModel.load(str(target))
    # The child's save was complete when it was killed: it is the one restored.
    assert torch.equal(loaded.head.gates.detach(), torch.full((4,), 0.25))
    assert (target / "notes.txt").read_text() == "user notes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["servable"]  # siblings cleaned up
    x = torch.rand(2, 5)
    expected = loaded.encoders["default"](x) * torch.tanh(torch.tensor(0.25))
    torch.testing.assert_close(loaded.encode(list(x), to_numpy=False), expected)


def test_interrupted_first_save_without_a_new_model_restores_the_previous(tmp_path):
    """Only the previous save is complete (the new temp directory lacks config.json)."""
    target = tmp_path / "m"
    model = SimilarityModel(encoders=LinearEncoder(5, 4), head=GatedHead(4))
    model.save(str(target))
    os.rename(target, tmp_path / ".m.old-0123")
    (tmp_path / ".m.tmp-4567" / "head").mkdir(parents=True)  # a save killed while writing
    loaded = SimilarityModel.load(str(target))
    torch.testing.assert_close(loaded.head.gates, model.head.gates)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".m.tmp-4567", "m"]
    model.save(str(target))  # a later save works next to the leftover


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    path = tmp_path / "data é file.bin"  # unicode and spaces
    with atomic_write(path) as file:
        torch.save({"x": torch.arange(3)}, file)
    assert torch.equal(torch.load(path, weights_only=True)["x"], torch.arange(3))
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(path) as file:
            file.write(b"partial")
            raise RuntimeError("boom")
    assert torch.equal(torch.load(path, weights_only=True)["x"], torch.arange(3))
    with atomic_write(tmp_path / "text.json", "w") as file:
        file.write('{"ü": 1}')
    assert (tmp_path / "text.json").read_text(encoding="utf-8") == '{"ü": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data é file.bin", "text.json"]
    with pytest.raises(ValueError, match="mode"):
        with atomic_write(path, "a"):
            pass
