"""Measure: epoch time of the quick-start model with and without the encoder cache.

The frozen all-MiniLM-L6-v2 encoder dominates an uncached epoch: every text goes through the
transformer again. With ``CacheConfig`` the texts are encoded once (the fill pass) and epochs
only run the head. The script trains the same model twice for ``--epochs`` epochs, counts the
texts the encoder sees, and times each epoch with a callback.

Writes ``cache_epoch_time.png`` into ``--out-dir`` (default ``docs/source/_static``)::

    python docs/scripts/measure_cache.py
"""

from __future__ import annotations

import os
import time
from typing import Dict, List, Optional

from _plotting import import_repo, pyplot, save_figure, script_parser

FILE_NAME = "cache_epoch_time.png"


def epoch_timer():
    """A Lightning callback that records the wall time of every training epoch (incl. val)."""
    import pytorch_lightning as pl

    class EpochTimer(pl.Callback):
        def __init__(self):
            self.times: List[float] = []

        def on_train_epoch_start(self, trainer, pl_module):
            self._start = time.perf_counter()

        def on_validation_epoch_end(self, trainer, pl_module):
            if not trainer.sanity_checking:
                self.times.append(time.perf_counter() - self._start)

    return EpochTimer()


def counting(encoder):
    """Wrap ``encoder.forward`` so that ``encoder.texts_seen`` counts the texts it encodes."""
    forward = encoder.forward
    encoder.texts_seen = 0

    def counted(batch):
        # a tokenised batch is a dict of (texts, tokens) arrays; anything else has one item per text
        encoder.texts_seen += len(batch["input_ids"]) if isinstance(batch, dict) else len(batch)
        return forward(batch)

    encoder.forward = counted
    return encoder


def train_once(cached: bool, epochs: int, limit: Optional[int], seed: int) -> Dict[str, object]:
    """Fit the quick-start model once; epoch times and the number of texts encoded."""
    import pytorch_lightning as pl

    from benchmarks._common import quiet_trainer
    from examples.console import quiet_libraries
    from examples.quick_start import (
        DATA_DIR,
        build_model_class,
        default_encoder_path,
        read_split,
        to_samples,
    )
    from quaterion import Quaterion
    from quaterion.dataset import GroupSimilarityDataLoader
    from quaterion.train.cache import CacheConfig, CacheType

    quiet_libraries()  # Lightning's banners, transformers' bars, harmless warnings
    pl.seed_everything(seed, verbose=False)
    base_class = build_model_class()

    class Model(base_class):
        def configure_caches(self):
            return CacheConfig(CacheType.AUTO, batch_size=64) if cached else None

    train = to_samples(read_split(os.path.join(DATA_DIR, "train.jsonl"), limit))
    val = to_samples(read_split(os.path.join(DATA_DIR, "val.jsonl"), limit))
    model = Model(default_encoder_path())
    encoder = counting(model.model.encoders["default"])
    timer = epoch_timer()
    trainer = quiet_trainer(
        accelerator="auto", max_epochs=epochs, callbacks=[timer], num_sanity_val_steps=0
    )
    started = time.perf_counter()
    Quaterion.fit(
        trainable_model=model,
        trainer=trainer,
        train_dataloader=GroupSimilarityDataLoader(train, batch_size=64, shuffle=True),
        val_dataloader=GroupSimilarityDataLoader(val, batch_size=64),
    )
    fit_time = time.perf_counter() - started
    return {
        "epoch_times": timer.times,
        "fit_time": fit_time,
        "setup_time": fit_time - sum(timer.times),  # cache fill (if any) + Lightning setup
        "texts_encoded": encoder.texts_seen,
        "dataset_texts": len(train) + len(val),
    }


def plot(results: Dict[str, Dict[str, object]], out_dir: str) -> str:
    fig, ax = pyplot().subplots(figsize=(6, 3.2))
    n_epochs = max(len(values["epoch_times"]) for values in results.values())
    for offset, (name, values) in zip((-0.2, 0.2), results.items()):
        bars = [values["setup_time"], *values["epoch_times"]]
        ax.bar([i + offset for i in range(len(bars))], bars, width=0.4, label=name)
    ax.set_xticks(range(n_epochs + 1))
    ax.set_xticklabels(
        ["before epoch 1\n(cache fill)"] + [f"epoch {i + 1}" for i in range(n_epochs)]
    )
    ax.set(ylabel="seconds", title="Time per epoch (train + validation), frozen MiniLM")
    ax.legend(fontsize=8)
    return save_figure(fig, out_dir, FILE_NAME)


def main(argv: Optional[List[str]] = None) -> Dict[str, Dict[str, object]]:
    parser = script_parser("Time epochs with and without the cache.", epochs=3, limit=None, seed=42)
    args = parser.parse_args(argv)
    import_repo()  # the script reuses examples/quick_start.py and benchmarks/_common.py
    results = {
        name: train_once(cached, args.epochs, args.limit, args.seed)
        for name, cached in (("no cache", False), ("CacheConfig(CacheType.AUTO)", True))
    }
    path = plot(results, args.out_dir)
    for name, values in results.items():
        times = ", ".join(f"{t:.2f}" for t in values["epoch_times"])
        print(
            f"{name:>28}: before epoch 1 {values['setup_time']:.2f} s, epochs [{times}] s, "
            f"fit {values['fit_time']:.1f} s, "
            f"{values['texts_encoded']} texts encoded for {values['dataset_texts']} in the data"
        )
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
