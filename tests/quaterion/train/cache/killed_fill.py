"""A DISK-cached fit that stops where it is told and waits to be killed, for the killed-run
tests.

Run as ``python -m tests.quaterion.train.cache.killed_fill SAVE_DIR STOP``. ``STOP`` is
``fill`` (the fill has written its rows file, not closed it) or ``save`` (the new generation
holds the encoder and label files, not the manifest). The process prints ``stopped`` there.
Its encoder has other weights (seed 1) than ``CountingEncoder()``, so a cache of that one
is rebuilt.
"""

import sys
import time

import torch

from quaterion.train.cache import CacheConfig, CacheType, DiskStore, persist
from tests.quaterion.train.helpers import CountingEncoder, Model, fit_data, fit_losses


def stop(*args, **kwargs):
    print("stopped", flush=True)
    time.sleep(600)


def main(save_dir: str, where: str) -> None:
    torch.set_num_threads(1)
    if where == "fill":
        DiskStore.finish_fill = stop
    else:
        persist.write_json = stop
    config = CacheConfig(cache_type=CacheType.DISK, save_dir=save_dir)
    fit_losses(
        Model(encoders={"default": CountingEncoder(seed=1)}, cache_config=config), *fit_data()[1]
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
