"""A real child process blocked in the middle of a save (a servable, or an ONNX export
directory written through the same swap), to be let go or SIGKILLed by the test."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from quaterion_models import SimilarityModel

REPO_ROOT = Path(__file__).resolve().parents[2]

# argv: mode ("servable" | "export"), target, ready file, go file[, export to copy].
# The child writes part of a save, creates ``ready``, then waits (at most 120 s) for ``go``.
CHILD = textwrap.dedent(
    """
    import shutil, sys, time
    from pathlib import Path

    mode, target, ready, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])

    def pause():
        ready.write_text("writing")
        deadline = time.monotonic() + 120
        while not go.exists():
            if time.monotonic() > deadline:
                sys.exit(3)
            time.sleep(0.02)

    if mode == "servable":
        from tests.quaterion_models.blocked_saves import gated_model
        from tests.quaterion_models.toy_encoders import LinearEncoder

        plain_save = LinearEncoder.save
        LinearEncoder.save = lambda encoder, path: (plain_save(encoder, path), pause())
        gated_model(0.75).save(str(target))
    else:  # the same swap as SimilarityModel.export_onnx, writing a copy of an export
        from quaterion_models.onnx import layout
        from quaterion_models.utils.files import atomic_directory

        with atomic_directory(target, layout.EXPORT) as tmp:
            shutil.copytree(sys.argv[5], tmp, dirs_exist_ok=True)
            pause()
    """
)


def gated_model(gate: float) -> "SimilarityModel":
    """``LinearEncoder(5, 4)`` (seed 1) and a ``GatedHead`` whose gates are all ``gate``."""
    import torch

    from quaterion_models import SimilarityModel
    from quaterion_models.heads import GatedHead
    from tests.quaterion_models.toy_encoders import LinearEncoder

    torch.manual_seed(1)
    model = SimilarityModel(encoders=LinearEncoder(5, 4), head=GatedHead(4))
    with torch.no_grad():
        model.head.gates.fill_(gate)
    return model


class Writer:
    """A child process blocked in the middle of a save into ``target``."""

    def __init__(self, tmp_path: Path, mode: str, target: Path, source: Optional[Path] = None):
        control = tmp_path / "control"
        control.mkdir(exist_ok=True)
        self.ready, self.go = control / "ready", control / "go"
        path = os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])
        args = [mode, str(target), str(self.ready), str(self.go)] + ([str(source)] * bool(source))
        self.process = subprocess.Popen(
            [sys.executable, "-c", CHILD, *args],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": path},
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 120
        while not self.ready.exists():
            if self.process.poll() is not None:
                raise AssertionError(f"writer exited early: {self.process.stderr.read()}")
            assert time.monotonic() < deadline, "writer never reached the middle of its save"
            time.sleep(0.02)

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        assert self.process.wait(timeout=30) == -signal.SIGKILL

    def finish(self) -> None:
        self.go.touch()
        _, errors = self.process.communicate(timeout=120)
        assert self.process.returncode == 0, errors

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        self.process.stderr.close()


def temp_dirs(parent: Path) -> list:
    """The ``.<name>.tmp-*`` save directories in ``parent``."""
    return sorted(p for p in parent.iterdir() if ".tmp-" in p.name)
