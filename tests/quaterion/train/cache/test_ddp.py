"""The cache under real 2-process DDP on CPU (gloo), started by Lightning."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from torch.utils.data import DistributedSampler

from quaterion.train.cache import CacheConfig, CacheType
from quaterion.train.cache._fingerprint import sample_positions
from tests.quaterion.train import helpers
from tests.quaterion.train.cache.ddp_fit import TRAIN, VAL
from tests.quaterion.train.helpers import CountingEncoder, Model, fit_data, fit_losses

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(out_dir, save_dir, devices=2):
    return _launch_module("tests.quaterion.train.cache.ddp_fit", [out_dir, save_dir], devices)


def _launch_module(module, args, devices=2, ranks=None):
    """``python -m module *args devices`` (Lightning starts the other ranks); the JSON each
    rank (the first ``ranks``, default all) wrote to ``<args[0]>/rank<r>.json``."""
    env = {
        **os.environ,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
        "PYTHONPATH": ROOT,
    }
    for name in [n for n in env if n.startswith("PL_") or n in ("LOCAL_RANK", "NODE_RANK")]:
        env.pop(name)  # e.g. PL_GLOBAL_SEED, left by seed_everything, seeds DistributedSampler
    os.makedirs(args[0], exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", module, *map(str, args), str(devices)],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=400,
        capture_output=True,
    )
    ranks = devices if ranks is None else ranks
    return [json.load(open(os.path.join(args[0], f"rank{r}.json"))) for r in range(ranks)]


def _encoders():
    return {"memory": CountingEncoder(seed=0), "disk": CountingEncoder(seed=1)}


def _expected_losses(world_size=2, batch_size=8):
    """Per step and rank: the losses of one process that steps on the mean of the ranks'
    losses over the batches DistributedSampler gives them (what DDP's gradient average is).

    Lightning always shuffles training data under DDP, with ``DistributedSampler``'s own
    seeded generator (seed 0, epoch 0), so the global batches are known in advance.
    """
    model = Model(encoders=_encoders())
    samples = helpers.group_samples(n=TRAIN)
    data = torch.stack([s.obj for s in samples])
    groups = torch.tensor([s.group for s in samples])
    embeddings = torch.cat([e(data) for _, e in sorted(_encoders().items())], dim=1).detach()
    head, loss_fn = model.model.head, model.loss
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    shards = [
        list(DistributedSampler(samples, world_size, rank, shuffle=True, seed=0))
        for rank in range(world_size)
    ]
    losses = [[] for _ in range(world_size)]
    for start in range(0, len(shards[0]), batch_size):
        step = []
        for rank, shard in enumerate(shards):
            idx = torch.tensor(shard[start : start + batch_size])
            step.append(loss_fn(embeddings=head(embeddings[idx]), groups=groups[idx]))
            losses[rank].append(step[-1].item())
        optimizer.zero_grad()
        (sum(step) / world_size).backward()
        optimizer.step()
    return losses


def test_two_ranks_split_the_fill_share_the_store_and_match_one_process(tmp_path):
    save_dir = tmp_path / "cache"
    ranks = _launch(tmp_path, save_dir)
    assert [r["world_size"] for r in ranks] == [2, 2]
    # each distinct key encoded once in total, each rank its half (fill batches of 4)
    for name in ("memory", "disk"):
        assert sum(r["calls"][name] for r in ranks) == TRAIN + VAL
        assert all(abs(r["calls"][name] - (TRAIN + VAL) / 2) <= 4 for r in ranks)
    # the raw data was read by the fill, each position by one rank, and by the content
    # sample rank 0 records in the manifest when it saves (read twice: its reproducibility
    # check)
    assert sum(r["reads"][0] for r in ranks) == TRAIN + 2 * len(sample_positions(TRAIN))
    assert sum(r["reads"][1] for r in ranks) == VAL + 2 * len(sample_positions(VAL))
    # every rank ends with the whole store, equal to the encoder's own outputs
    assert ranks[0]["rows"] == ranks[1]["rows"]
    reference = Model(encoders=_encoders(), cache_config=CacheConfig(CacheType.CPU))
    loader = helpers.group_loader(helpers.group_samples(n=TRAIN))
    reference.setup_dataloader(loader)
    reference.setup_cache(helpers.trainer(), loader, None)
    for name, cached in reference.model.encoders.items():
        assert len(ranks[0]["rows"][name]) == TRAIN + VAL
        for key, row in cached.offset_map.items():
            got = torch.tensor(ranks[0]["rows"][name][str(key)])
            torch.testing.assert_close(got, cached.cache[row])  # other batch sizes, threads
    # losses per step are those of one process stepping on the same global batches
    expected = _expected_losses()
    for rank in ranks:
        torch.testing.assert_close(
            torch.tensor(rank["losses"]), torch.tensor(expected[rank["rank"]])
        )
    # save_dir written once, by one rank, and reused by a launch with another world size
    assert os.path.isfile(save_dir / "manifest.json")
    assert len([f for f in os.listdir(save_dir) if f.startswith(".gen-")]) == 1
    encoders = _encoders()
    config = CacheConfig(CacheType.CPU, mapping={"disk": CacheType.DISK}, save_dir=str(save_dir))
    losses = fit_losses(Model(encoders=encoders, cache_config=config), *fit_data(shuffle=False)[1])
    assert [e.calls for e in encoders.values()] == [0, 0] and len(losses) == 3


@pytest.mark.slow
def test_data_smaller_than_the_world_is_a_clear_error_before_the_fill(tmp_path):
    """Lightning's predict gives no rank an empty share (a bare AssertionError on that rank,
    a lost connection on the others): the fill says what to change instead, before
    Lightning starts the other ranks."""
    args = [tmp_path, 1]
    [rank] = _launch_module("tests.quaterion.train.cache.tiny_ddp_fit", args, 2, ranks=1)
    assert "a dataset of 1 item(s) for 2 ranks" in rank["error"]
