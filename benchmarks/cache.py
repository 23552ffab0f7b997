"""Full-cache fit vs its physical floor (bare PyTorch), and cached vs uncached speed-up.

The floor is what any implementation must pay: one no-grad pass of the frozen encoder over
the data (batched like the cache fill), then the same head and loss trained in a bare
PyTorch loop over the precomputed vectors for the same epochs and batch size. Both runs,
and an uncached ``Quaterion.fit``, are measured side by side in this process.

Wall-clock and CPU (process) time are both reported; on a shared machine the CPU-time
ratio is the reliable one. Run: ``PYTHONPATH=. python benchmarks/cache.py [--quick]``.
"""

import argparse
import gc
import time
import warnings

import pytorch_lightning as pl
import torch
from torch import nn

from quaterion import Quaterion, TrainableModel
from quaterion.dataset import GroupSimilarityDataLoader, SimilarityGroupSample
from quaterion.loss import TripletLoss
from quaterion.train.cache import CacheConfig, CacheType
from quaterion_models.encoders import Encoder
from quaterion_models.heads import GatedHead

RAW_DIM = 512
HIDDEN = 1024


def _stack(batch):
    return torch.stack(batch)


class FrozenMLP(Encoder):
    """Frozen 2-layer MLP ``RAW_DIM -> HIDDEN -> d`` (stands in for a pretrained encoder)."""

    def __init__(self, size: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(RAW_DIM, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, size))
        self._size = size

    @property
    def trainable(self) -> bool:
        return False

    @property
    def embedding_size(self) -> int:
        return self._size

    def get_collate_fn(self):
        return _stack

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


def _trainer(epochs: int) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=epochs,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
    )


class _Clock:
    """Wall and CPU (process) time; CPU time is robust to other processes on a shared host.

    Entering runs a full garbage collection first, so neither side pays for collecting
    what an earlier run left behind (a full collection of this ~0.5M-object heap costs
    about 0.25 s, more than half the small floor, and otherwise lands on a random run).
    """

    def __enter__(self):
        gc.collect()
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def floor(encoder, raw, groups, d, batch, epochs, fill_batch) -> _Clock:
    """Bare no-grad encoder pass + bare training loop over the precomputed tensors."""
    with _Clock() as clock:
        _floor(encoder, raw, groups, d, batch, epochs, fill_batch)
    return clock


def _floor(encoder, raw, groups, d, batch, epochs, fill_batch) -> None:
    with torch.no_grad():
        vectors = torch.cat(
            [encoder(raw[i : i + fill_batch]) for i in range(0, len(raw), fill_batch)]
        )
    torch.manual_seed(0)
    head, loss_fn = GatedHead(d), TripletLoss(mining="hard")
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(raw)).split(batch):
            loss = loss_fn(embeddings=head(vectors[idx]), groups=groups[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def quaterion_fit(encoder, samples, batch, epochs, fill_batch, cache: bool) -> _Clock:
    model = BenchModel(encoder, cache, fill_batch)
    loader = GroupSimilarityDataLoader(samples, batch_size=batch, shuffle=True)
    with _Clock() as clock:
        Quaterion.fit(model, _trainer(epochs), loader)
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
    floors, cached = [], []
    for _ in range(repeats):  # interleaved, so load changes hit both alike
        floors.append(floor(encoder, raw, groups, d, batch, epochs, fill_batch))
        cached.append(quaterion_fit(encoder, samples, batch, epochs, fill_batch, True))
    line = f"{name}: n={n} d={d} batch={batch} epochs={epochs}"
    for clock in ("wall", "cpu"):
        best_floor = min(getattr(c, clock) for c in floors)
        best_cached = min(getattr(c, clock) for c in cached)
        line += (
            f" | {clock}: floor {best_floor:.2f}s cached fit {best_cached:.2f}s"
            f" ratio {best_cached / best_floor:.3f}x"
        )
    if uncached:
        plain = quaterion_fit(encoder, samples, batch, epochs, fill_batch, False)
        best = min(c.cpu for c in cached)
        line += f" | uncached fit cpu {plain.cpu:.2f}s, cache speed-up {plain.cpu / best:.2f}x"
    print(line, flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="half the data")
    parser.add_argument("--repeats", type=int, default=5, help="best of N runs (default 5)")
    parser.add_argument("--only", choices=["small", "large"], help="run one configuration")
    parser.add_argument("--no-uncached", action="store_true", help="skip the uncached runs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
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
