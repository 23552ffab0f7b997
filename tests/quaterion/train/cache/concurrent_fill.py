"""One DISK-cached fit on a shared ``save_dir``, for the concurrent-writers test.

Run as ``python -m tests.quaterion.train.cache.concurrent_fill SAVE_DIR OUT_JSON [HOLD]``.
With ``HOLD`` (a file path) the encoder's first fill batch waits until that file exists and
then one more second, so a second process can be started while this one writes the cache.
"""

import json
import logging
import os
import sys
import time

import torch

from quaterion.train.cache import CacheConfig, CacheType, _save_dir
from tests.quaterion.train.helpers import CountingEncoder, Model, fit_data, fit_losses


class HoldingEncoder(CountingEncoder):
    """Waits for the file ``hold`` in its first batch (at most 120 s)."""

    def __init__(self, hold):
        super().__init__()
        self.hold = hold

    def forward(self, batch):
        if self.hold and self.calls == 0:
            deadline = time.monotonic() + 120
            while not os.path.exists(self.hold) and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(1.0)
        return super().forward(batch)


def main(save_dir: str, out: str, hold: str = "") -> None:
    torch.set_num_threads(1)
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", force=True
    )
    _save_dir.LOCK_WAIT_S = 240.0  # wait as long as the other process may hold the lock
    encoder = HoldingEncoder(hold)
    config = CacheConfig(cache_type=CacheType.DISK, save_dir=save_dir)
    losses = fit_losses(Model(encoders={"default": encoder}, cache_config=config), *fit_data()[1])
    with open(out, "w") as file:
        json.dump({"calls": encoder.calls, "losses": losses.tolist()}, file)


if __name__ == "__main__":
    main(*sys.argv[1:])
