"""The encoder cache against its floors, across processes and larger than memory.

* ``fit`` (default): a full-cache ``Quaterion.fit`` against two floors measured side by
  side in this process. Both pay one no-grad pass of the frozen encoder over the data
  (batched like the cache fill) and then train the same head and loss over the
  precomputed vectors for the same epochs and batch size: in a bare PyTorch loop, and in a
  bare ``LightningModule`` fed by a plain ``DataLoader`` (what Lightning itself costs).
  Wall-clock and CPU (process) time are both reported; on a shared machine the CPU-time
  ratio is the reliable one. Time per training step and host synchronisations per step
  (``quaterion.utils.testing.count_step_syncs``, counted in an extra untimed 1-epoch fit;
  the floor's loop step counted with ``count_host_syncs``) are printed next to them.
  Targets: within 1.10x the bare LightningModule and within
  1.5x the bare loop at d=128, batch 256. The same cached fit is also timed under
  ``Trainer(barebones=True)`` (Lightning's raw-speed mode, in which nothing is logged):
  with the small head most of the gap to the bare loop is Lightning's ``self.log``.
* ``ddp-fill``: the fill of one process against two DDP processes on CPU (gloo) with an
  encoder whose cost is a per-batch sleep (device time, not CPU: the 2 processes share the
  same cores). Reports each rank's share of encoded objects and the fill-time ratio
  (target at most 0.65x).
* ``disk``: a 4 GB ``CacheType.DISK`` store (2M x 512 float32 by default) filled and
  trained for one epoch; reports the peak anonymous resident memory (``RssAnon``, target
  under 1.5 GB). Needs about 4.5 GB free under ``--dir``.

Run: ``PYTHONPATH=. python benchmarks/cache.py [fit|ddp-fill|disk] [--quick]``.
"""

import argparse
import math
import time
from contextlib import nullcontext
import warnings

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from examples.cli_types import positive_int
from quaterion import Quaterion, TrainableModel
from quaterion.dataset import GroupSimilarityDataLoader, SimilarityGroupSample
from quaterion.loss import TripletLoss
from quaterion.train.cache import CacheConfig, CacheType
from quaterion.utils.testing import count_host_syncs, count_step_syncs
from quaterion_models.heads import GatedHead

from benchmarks._common import Clock, FrozenEncoder, quiet_trainer, status_kib

RAW_DIM = 512
HIDDEN = 1024


class FrozenMLP(FrozenEncoder):
    """Frozen 2-layer MLP ``RAW_DIM -> HIDDEN -> d`` (stands in for a pretrained encoder)."""

    def __init__(self, size: int):
        super().__init__(size)
        self.net = nn.Sequential(nn.Linear(RAW_DIM, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, size))

    def forward(self, batch):
        return self.net(batch)


class BenchModel(TrainableModel):
    def __init__(self, encoder, cache: bool, fill_batch: int):
        self._encoder_box, self._use_cache, self._fill_batch = [encoder], cache, fill_batch
        super().__init__()

    def configure_encoders(self):
        return self._encoder_box[0]

    def configure_head(self, input_embedding_size):
        torch.manual_seed(0)
        return GatedHead(input_embedding_size)

    def configure_loss(self):
        return TripletLoss(mining="hard")

    def configure_caches(self):
        if not self._use_cache:
            return None
        return CacheConfig(CacheType.AUTO, batch_size=self._fill_batch)

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.head.parameters(), lr=1e-3)


def _trainer(epochs: int, barebones: bool = False) -> pl.Trainer:
    if barebones:  # Lightning's raw-speed mode: no logging, bar, summary or checkpoints
        return pl.Trainer(accelerator="cpu", devices=1, max_epochs=epochs, barebones=True)
    return quiet_trainer(max_epochs=epochs, num_sanity_val_steps=0)


def floor(encoder, raw, groups, d, batch, epochs, fill_batch) -> Clock:
    """Bare no-grad encoder pass + bare training loop over the precomputed tensors."""
    with Clock() as clock:
        _floor(encoder, raw, groups, d, batch, epochs, fill_batch)
    return clock


def _floor(encoder, raw, groups, d, batch, epochs, fill_batch, syncs=None) -> None:
    """The floor's work; with ``syncs`` (a list), the host syncs of each step's loss and
    backward are appended."""
    with torch.no_grad():
        vectors = torch.cat(
            [encoder(raw[i : i + fill_batch]) for i in range(0, len(raw), fill_batch)]
        )
    torch.manual_seed(0)
    head, loss_fn = GatedHead(d), TripletLoss(mining="hard")
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(raw)).split(batch):
            optimizer.zero_grad()
            # counted like a training_step (loss and backward), only when asked: counting
            # slows every operation down
            with count_host_syncs() if syncs is not None else nullcontext() as count:
                loss = loss_fn(embeddings=head(vectors[idx]), groups=groups[idx])
                loss.backward()
            optimizer.step()
            if syncs is not None:
                syncs.append(count.total)


def step_syncs(encoder, raw, groups, samples, d, batch, fill_batch) -> str:
    """Host syncs per training step of a 1-epoch cached fit and of the floor's loop step
    (untimed: counting slows every operation down)."""
    model = BenchModel(encoder, True, fill_batch)
    loader = GroupSimilarityDataLoader(samples, batch_size=batch, shuffle=True)
    with count_step_syncs(model, hooks=("training_step",)) as steps:
        Quaterion.fit(model, _trainer(1), loader)
    ours = [count.total for count in steps["training_step"]]
    floor_syncs: list = []
    _floor(encoder, raw, groups, d, batch, 1, fill_batch, syncs=floor_syncs)
    return (
        f"host syncs per step: cached fit training_step max {max(ours)} over {len(ours)} "
        f"steps, bare loop step (loss + backward) max {max(floor_syncs)}"
    )


class BareModule(pl.LightningModule):
    """The head and loss of the floor as a bare ``LightningModule`` (no Quaterion)."""

    def __init__(self, d: int):
        super().__init__()
        torch.manual_seed(0)
        self.head, self.loss_fn = GatedHead(d), TripletLoss(mining="hard")

    def training_step(self, batch, batch_idx):
        vectors, groups = batch
        loss = self.loss_fn(embeddings=self.head(vectors), groups=groups)
        self.log("train_loss", loss, batch_size=vectors.shape[0])
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.head.parameters(), lr=1e-3)


def bare_lightning(encoder, raw, groups, d, batch, epochs, fill_batch) -> Clock:
    """No-grad encoder pass + a bare LightningModule over a plain DataLoader of tensors."""
    with Clock() as clock:
        with torch.no_grad():
            vectors = torch.cat(
                [encoder(raw[i : i + fill_batch]) for i in range(0, len(raw), fill_batch)]
            )
        data = TensorDataset(vectors, groups)
        quiet_trainer(max_epochs=epochs, num_sanity_val_steps=0).fit(
            BareModule(d), DataLoader(data, batch_size=batch, shuffle=True)
        )
    return clock


def quaterion_fit(
    encoder, samples, batch, epochs, fill_batch, cache: bool, barebones: bool = False
) -> Clock:
    model = BenchModel(encoder, cache, fill_batch)
    loader = GroupSimilarityDataLoader(samples, batch_size=batch, shuffle=True)
    with Clock() as clock:
        Quaterion.fit(model, _trainer(epochs, barebones), loader)
    return clock


def run(name, n, d, batch, epochs, fill_batch, repeats, uncached: bool):
    torch.manual_seed(0)
    raw = torch.randn(n, RAW_DIM)
    groups = torch.randint(0, max(2, n // 16), (n,))
    samples = [SimilarityGroupSample(obj=raw[i], group=int(groups[i])) for i in range(n)]
    encoder = FrozenMLP(d)
    encoder.disable_gradients_if_required()
    _floor(encoder, raw, groups, d, batch, 1, fill_batch)  # warm-up, both sides alike
    quaterion_fit(encoder, samples, batch, 1, fill_batch, True)
    bare_lightning(encoder, raw, groups, d, batch, 1, fill_batch)
    quaterion_fit(encoder, samples, batch, 1, fill_batch, True, barebones=True)
    clocks = {"bare loop": [], "bare LightningModule": [], "cached fit": [], "barebones": []}
    for _ in range(repeats):  # interleaved, so load changes hit all alike
        clocks["bare loop"].append(floor(encoder, raw, groups, d, batch, epochs, fill_batch))
        clocks["bare LightningModule"].append(
            bare_lightning(encoder, raw, groups, d, batch, epochs, fill_batch)
        )
        clocks["cached fit"].append(
            quaterion_fit(encoder, samples, batch, epochs, fill_batch, True)
        )
        # the same cached fit under Trainer(barebones=True): no self.log, no logger overhead
        clocks["barebones"].append(
            quaterion_fit(encoder, samples, batch, epochs, fill_batch, True, barebones=True)
        )
    steps = epochs * math.ceil(n / batch)
    line = f"{name}: n={n} d={d} batch={batch} epochs={epochs} ({steps} training steps)"
    cached = clocks["cached fit"]
    for clock in ("wall", "cpu"):
        best = {key: min(getattr(c, clock) for c in runs) for key, runs in clocks.items()}
        line += f"\n  {clock}: " + ", ".join(f"{k} {v:.2f}s" for k, v in best.items())
        line += (
            f" | cached/bare loop {best['cached fit'] / best['bare loop']:.3f}x"
            f", cached/bare LightningModule "
            f"{best['cached fit'] / best['bare LightningModule']:.3f}x"
            f", barebones cached/bare loop {best['barebones'] / best['bare loop']:.3f}x"
        )
        per_step = {key: 1000 * value / steps for key, value in best.items()}
        line += "\n    per step (run / steps): "
        line += ", ".join(f"{k} {v:.2f} ms" for k, v in per_step.items())
    line += "\n  " + step_syncs(encoder, raw, groups, samples, d, batch, fill_batch)
    if uncached:
        plain = quaterion_fit(encoder, samples, batch, epochs, fill_batch, False)
        best = min(c.cpu for c in cached)
        line += f" | uncached fit cpu {plain.cpu:.2f}s, cache speed-up {plain.cpu / best:.2f}x"
    print(line, flush=True)


class SleepEncoder(FrozenEncoder):
    """Frozen encoder whose cost is wall time: ``sleep`` seconds per batch (device time)."""

    def __init__(self, sleep: float, size: int = 64):
        super().__init__(size)
        self.sleep, self.calls = sleep, 0

    def forward(self, batch):
        time.sleep(self.sleep)
        self.calls += batch.shape[0]
        return batch.repeat(1, self.size // batch.shape[1])


class _FillClock(pl.Callback):
    """Time from the start of the fill (every rank joined, imports done)."""

    def on_predict_start(self, trainer, pl_module):
        self.start = time.perf_counter()


def ddp_fill_worker(devices: int, out: str, n: int, sleep: float) -> None:
    """One fill with ``devices`` CPU processes; rank 0 writes time and per-rank calls."""
    import json

    import torch.distributed as dist

    torch.set_num_threads(1)
    samples = [
        SimilarityGroupSample(obj=torch.full((8,), float(i)), group=i % 16) for i in range(n)
    ]
    encoder = SleepEncoder(sleep)
    model = BenchModel(encoder, cache=True, fill_batch=32)
    loader = GroupSimilarityDataLoader(samples, batch_size=64)
    clock = _FillClock()
    strategy = "ddp" if devices > 1 else "auto"
    trainer = quiet_trainer(devices=devices, strategy=strategy, callbacks=[clock])
    model.setup_dataloader(loader)
    model.setup_cache(trainer, loader, None)
    elapsed = time.perf_counter() - clock.start
    calls = [encoder.calls]
    if devices > 1:
        calls = [None] * devices
        dist.all_gather_object(calls, encoder.calls)
    rows = model.model.encoders["default"].cache.shape[0]
    if trainer.global_rank == 0:
        with open(out, "w") as file:
            json.dump({"seconds": elapsed, "calls": calls, "rows": rows}, file)


def ddp_fill(n: int, sleep: float) -> None:
    """1-process vs 2-process fill of the sleeping encoder, each launched fresh."""
    import json
    import os
    import socket
    import subprocess
    import sys
    import tempfile

    results = {}
    for devices in (1, 2):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        out = tempfile.mktemp(suffix=".json")
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        env.pop("LOCAL_RANK", None)
        command = [sys.executable, "-m", "benchmarks.cache", "ddp-fill-worker"]
        command += [str(devices), out, "--n", str(n), "--sleep", str(sleep)]
        subprocess.run(command, env=env, check=True, timeout=900, capture_output=True)
        with open(out) as file:
            results[devices] = json.load(file)
        os.remove(out)
    one, two = results[1], results[2]
    share = ", ".join(f"rank {r}: {c}" for r, c in enumerate(two["calls"]))
    print(
        f"ddp fill: n={n}, fill batch 32, {sleep * 1000:.0f} ms per batch | 1 process "
        f"{one['seconds']:.2f}s | 2 processes {two['seconds']:.2f}s ({share}; "
        f"{two['rows']} rows on every rank) | ratio {two['seconds'] / one['seconds']:.3f}x",
        flush=True,
    )


class _IndexRows(torch.utils.data.Dataset):
    """``n`` group samples made on access; the object is the index (nothing held)."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        return SimilarityGroupSample(obj=index, group=index % 1024)


def _index_collate(batch):
    return torch.tensor(batch, dtype=torch.float32)


class IndexEncoder(FrozenEncoder):
    """Frozen, cheap and deterministic: ``sin(index * f_j)`` for ``j < size``."""

    def __init__(self, size: int):
        super().__init__(size, collate=_index_collate)
        self.register_buffer("freqs", torch.linspace(1e-4, 1.0, size))

    def forward(self, batch):
        return torch.sin(batch[:, None] * self.freqs[None, :])


def rss_anon() -> float:
    """Anonymous resident memory in bytes (the heap and tensors, not mapped files)."""
    return status_kib("RssAnon") * 1024


class DiskModel(BenchModel):
    def configure_caches(self):
        return CacheConfig(CacheType.DISK, batch_size=self._fill_batch, save_dir=self.save_dir)


def disk(n: int, d: int, directory: str) -> None:
    """Fill a ``n x d`` float32 DISK store and train one epoch; peak ``RssAnon``."""
    import os
    import shutil
    import tempfile
    import threading

    torch.set_num_threads(1)
    save_dir = tempfile.mkdtemp(prefix="quaterion-disk-bench-", dir=directory)
    peak, done = [rss_anon()], threading.Event()

    def watch():
        while not done.wait(0.1):
            peak[0] = max(peak[0], rss_anon())

    watcher = threading.Thread(target=watch, daemon=True)
    try:
        DiskModel.save_dir = save_dir
        model = DiskModel(IndexEncoder(d), cache=True, fill_batch=8192)
        loader = GroupSimilarityDataLoader(_IndexRows(n), batch_size=4096, shuffle=True)
        start_rss = rss_anon()
        watcher.start()
        started = time.perf_counter()
        Quaterion.fit(model, quiet_trainer(max_epochs=1, num_sanity_val_steps=0), loader)
        seconds = time.perf_counter() - started
        done.set()
        watcher.join()
        rows = os.path.getsize(os.path.join(save_dir, "encoders", "default.rows"))
    finally:
        done.set()
        shutil.rmtree(save_dir, ignore_errors=True)
    print(
        f"disk store: n={n} d={d} ({rows / 2**30:.2f} GiB of rows) filled and trained one "
        f"epoch in {seconds:.0f}s | RssAnon before {start_rss / 2**30:.2f} GiB, peak "
        f"{peak[0] / 2**30:.2f} GiB (target < 1.5 GB)",
        flush=True,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "what", nargs="?", default="fit", choices=["fit", "ddp-fill", "disk", "ddp-fill-worker"]
    )
    parser.add_argument("worker", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="half the data")
    parser.add_argument(
        "--repeats", type=positive_int, default=5, help="best of N runs (default 5)"
    )
    parser.add_argument("--only", choices=["small", "large"], help="run one configuration")
    parser.add_argument("--no-uncached", action="store_true", help="skip the uncached runs")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch threads (default 1)")
    parser.add_argument("--n", type=positive_int, help="objects (ddp-fill: 2048, disk: 2,000,000)")
    parser.add_argument("--d", type=positive_int, default=512, help="disk: row width (default 512)")
    parser.add_argument("--sleep", type=float, default=0.05, help="ddp-fill: s per batch")
    parser.add_argument("--dir", default=".", help="disk: where to put the store")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.what == "ddp-fill-worker":
        ddp_fill_worker(int(args.worker[0]), args.worker[1], args.n, args.sleep)
        return
    if args.what == "ddp-fill":
        ddp_fill(args.n or 2048, args.sleep)
        return
    if args.what == "disk":
        disk(args.n or 2_000_000, args.d, args.dir)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    scale = 2 if args.quick else 1
    configs = {
        "small": ("small head", 4096 // scale, 128, 256, 10, 512),
        "large": ("large head", 8192 // scale, 1024, 1024, 10, 1024),
    }
    for key, config in configs.items():
        if args.only in (None, key):
            run(*config, repeats=args.repeats, uncached=not args.no_uncached)


if __name__ == "__main__":
    main()
