"""A cached fit under Lightning's own DDP launcher while another job tries to rebuild its
cache in the window where rank 0 has set the cache up and rank 1 has not started yet.

``python -m tests.quaterion.train.cache.held_ddp_fit OUT_DIR SAVE_DIR DEVICES``: rank 0 sets
up (loads) the cache in SAVE_DIR, runs ``... held_ddp_fit rival SAVE_DIR`` (a fit of another
model and other data into SAVE_DIR) to its end, then fits (Lightning then starts rank 1,
which sets its cache up). Every rank writes ``rank<r>.json``: its encoder calls, the
generation it found and, on rank 0, what the rival printed.
"""

import json
import os
import subprocess
import sys

import torch

from quaterion import Quaterion
from quaterion.train.cache import CacheConfig, CacheDirInUseError, CacheType, _save_dir
from tests.quaterion.train.helpers import CountingEncoder, LossRecorder, Model, fit_data
from tests.quaterion.train.helpers import fit_losses
from tests.quaterion.train.helpers import trainer as fit_trainer


def config(save_dir: str) -> CacheConfig:
    return CacheConfig(cache_type=CacheType.CPU, save_dir=save_dir)


class RivalWindowModel(Model):
    """Runs the rival job between its cache set-up and the fit, on rank 0 only."""

    rival = None

    def cache_loaders(self, trainer, train_dataloader, val_dataloader):
        fit = super().cache_loaders(trainer, train_dataloader, val_dataloader)
        if "LOCAL_RANK" not in os.environ:  # rank 0, before Lightning starts the others
            command = [sys.executable, "-m", __spec__.name, "rival", self.cache_config.save_dir]
            done = subprocess.run(command, capture_output=True, text=True, timeout=200)
            self.rival = done.stdout.strip().splitlines()[-1]
        return fit


def rival(save_dir: str) -> None:
    """Another job: a fit of another model on other data into ``save_dir``."""
    _save_dir.LOCK_WAIT_S = 1.0
    encoder = CountingEncoder(seed=5)
    try:
        fit_losses(
            Model(encoders={"default": encoder}, cache_config=config(save_dir)), *fit_data(n=20)[1]
        )
        print("rebuilt", encoder.calls)
    except CacheDirInUseError as err:
        print("refused", encoder.calls, err)


def main(out_dir: str, save_dir: str, devices: int) -> None:
    encoder = CountingEncoder()
    model = RivalWindowModel(encoders={"default": encoder}, cache_config=config(save_dir))
    recorder = LossRecorder()
    trainer = fit_trainer(strategy="ddp", devices=devices, callbacks=[recorder])
    Quaterion.fit(model, trainer, *fit_data(shuffle=False)[1])
    result = {
        "calls": encoder.calls,
        "generation": os.readlink(os.path.join(save_dir, "current")),
        "rival": model.rival,
        "losses": [float(loss) for loss in recorder.losses],
    }
    with open(os.path.join(out_dir, f"rank{trainer.global_rank}.json"), "w") as file:
        json.dump(result, file)


if __name__ == "__main__":
    torch.set_num_threads(1)
    if sys.argv[1] == "rival":
        rival(sys.argv[2])
    else:
        main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
