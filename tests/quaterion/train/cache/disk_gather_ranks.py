"""One rank of a 2-process DISK fill joined by ``DiskCacheEncoder.gather_ranks`` (gloo).

Run as ``python -m tests.quaterion.train.cache.disk_gather_ranks RANK PORT BASE MODE OUT``:
``MODE`` is ``shared`` (one save_dir), ``node_local`` (each rank its own save_dir, as on two
machines) or ``truncated`` (rank 1 cuts its fill file short before the join). Writes
``{"rows": [...]}`` or ``{"error": "..."}`` to ``OUT``.
"""

import datetime
import json
import os
import sys

import torch
import torch.distributed as dist

from quaterion.train.cache import DiskCacheEncoder
from tests.quaterion.train.helpers import IN_DIM, CountingEncoder


def main(rank: int, port: int, base: str, mode: str, out: str) -> None:
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=2,
        timeout=datetime.timedelta(seconds=60),
    )
    directory = os.path.join(base, f"node{rank}" if mode == "node_local" else "shared")
    encoder = DiskCacheEncoder(CountingEncoder(), directory, "default")
    data = torch.randn(4, IN_DIM, generator=torch.Generator().manual_seed(rank))
    encoder.fill_cache([10 * rank + i for i in range(4)], data, [{}] * 4)
    encoder.finish_fill()
    if mode == "truncated" and rank == 1:
        path = os.path.join(directory, ".fill", "default", "rank1.rows")
        with open(path, "r+b") as file:
            file.truncate(os.path.getsize(path) - 4)
    try:
        encoder.gather_ranks()
        result = {"rows": encoder.cache.tolist(), "keys": list(encoder.offset_map)}
    except RuntimeError as err:
        result = {"error": str(err)}
    with open(out, "w") as file:
        json.dump(result, file)
    dist.destroy_process_group()


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])
