"""Replay check: sentence-transformers' recipe in its own loop and through the gradient cache.

Both fine-tune the whole all-MiniLM-L6-v2 on the quick-start training split from the same
seed, on the same batches (sentence-transformers' ``SentenceLabelDataset`` seeded with
NumPy, and ``quaterion.dataset.GroupCycleBatchSampler`` with that seed), with the same
loss, optimizer groups, clipping and schedule:

* sentence-transformers: ``benchmarks/finetune_quality.py``'s run (``BatchHardTripletLoss``,
  AdamW 2e-5, ``WarmupLinear`` over 10% of the steps, clipping at 1, 3 epochs, batch 32);
* quaterion: ``examples/finetune_encoder.py`` with ``--finetune-loss hard-euclidean
  --finetune-sampler group-cycle --finetune-clip 1`` and the same numbers, through
  mini-batches of ``--mini-batch`` texts.

By default dropout is off in both (the batch order is then the only randomness) and the two
runs must end on the same model. With ``--dropout`` they end on the same model only when the
whole batch is one mini-batch (``--mini-batch 32``): smaller mini-batches draw their dropout
masks in another order than one batch does.

It prints both R-precisions over ``--split`` and the weight difference: the norm of the
difference of the final weights over the norm of the update sentence-transformers' run
made, for the whole model and the largest per tensor (attention key biases apart: their
gradient is zero in exact arithmetic, so Adam turns float rounding into full steps).

Run: ``PYTHONPATH=. python benchmarks/finetune_replay.py [--seed 42] [--mini-batch 16]``
"""

import argparse

from examples.cli_types import non_negative_int, positive_int, random_seed
import os
import tempfile
import warnings

ST_RECIPE = [
    "--finetune-batch-size", "32", "--finetune-lr", "2e-5", "--finetune-warmup", "0.1",
    "--finetune-epochs", "3", "--finetune-loss", "hard-euclidean",
    "--finetune-sampler", "group-cycle", "--finetune-clip", "1",
]  # fmt: skip


def weight_difference(start: dict, reference: dict, other: dict) -> tuple:
    """``(whole model, worst tensor, its name)``: ``|other - reference| / |reference - start|``."""
    import torch

    names = [name for name in reference if reference[name].is_floating_point()]
    diffs = {n: (other[n].double() - reference[n].double()).norm() for n in names}
    updates = {n: (reference[n].double() - start[n].double()).norm() for n in names}
    whole = torch.stack(list(diffs.values())).norm() / torch.stack(list(updates.values())).norm()
    ratios = {n: float(diffs[n] / updates[n]) for n in names if "key.bias" not in n}
    worst = max(ratios, key=ratios.get)
    return float(whole), ratios[worst], worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=random_seed, default=42)
    parser.add_argument("--split", choices=("val", "test"), default="val")
    parser.add_argument("--mini-batch", type=positive_int, default=16)
    parser.add_argument("--dropout", action="store_true", help="keep dropout on in both")
    parser.add_argument(
        "--threads", type=non_negative_int, default=0, help="torch threads (0: all cores)"
    )
    options = parser.parse_args()
    warnings.filterwarnings("ignore")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch
    from transformers import AutoModel

    from benchmarks.finetune_quality import StRecipe, score_directory, sentence_transformers_run
    from examples.finetune_encoder import finetune_encoder
    from examples.quick_start import (
        DATA_DIR,
        default_encoder_path,
        parse_args,
        read_split,
        to_samples,
    )

    torch.set_num_threads(options.threads or max(1, os.cpu_count() or 1))
    train = to_samples(read_split(os.path.join(DATA_DIR, "train.jsonl")))
    scored = to_samples(read_split(os.path.join(DATA_DIR, f"{options.split}.jsonl")))
    path = default_encoder_path()
    start = AutoModel.from_pretrained(path).state_dict()
    with tempfile.TemporaryDirectory(prefix="st-replay-") as folder:
        st_seconds = sentence_transformers_run(
            path, train, options.seed, folder, StRecipe(dropout=options.dropout)
        )
        st_score = score_directory(folder, scored)
        st_weights = AutoModel.from_pretrained(folder).state_dict()
    argv = ST_RECIPE + ["--finetune-mini-batch", str(options.mini_batch)]
    argv += ["--seed", str(options.seed)] + ([] if options.dropout else ["--finetune-no-dropout"])
    ours = finetune_encoder(parse_args(argv), path, train, scored)
    encoder = ours["model"].model.encoders["default"]
    our_weights = encoder.embedder.model.state_dict()
    whole, worst, name = weight_difference(start, st_weights, our_weights)
    print(
        f"seed {options.seed}, split {options.split}, mini-batch {options.mini_batch}, "
        f"dropout {'on' if options.dropout else 'off'}"
    )
    print(f"sentence-transformers  {st_seconds:7.1f} s   R-precision {st_score:.5f}")
    print(
        f"quaterion              {ours['train_s']:7.1f} s   R-precision {ours['r_precision']:.5f}"
    )
    print(
        f"weight difference / update: whole model {whole:.2e}; worst tensor {worst:.2e} "
        f"({name}; attention key biases apart)"
    )


if __name__ == "__main__":
    main()
