"""Train, mine hard negatives with the trained model, train again (offline, about a minute).

Run from the repository root::

    python -m examples.mining_round

On the quick-start data (``examples/quick_start_data``: texts about a topic, the group, each
written in one of eight shared styles), over frozen MiniLM vectors computed once:

1. round 1: train a ``SkipConnectionHead`` with ``TripletLoss(mining="hard")`` on shuffled
   batches (in-batch negatives only) and measure held-out ``RetrievalRPrecision``;
2. mine: ``mine_hard_negatives`` with the round-1 servable over the training texts (the
   texts of *other* topics it ranks closest: mostly the same style);
3. round 2: continue training on batches from ``HardNegativeBatchSampler`` (each anchor with
   a positive and its mined negatives) and measure again;
4. control: continue round 1 for the same epochs on shuffled batches instead, so the gain of
   mining is not confused with the gain of training longer.
"""

from __future__ import annotations

import argparse
import logging
import os
import warnings
from typing import Any, Dict

from examples.cli_types import non_negative_int, positive_float, positive_int, random_seed
from examples.console import plain_text
from examples.quick_start import DATA_DIR


def run(args: argparse.Namespace) -> Dict[str, Any]:
    """Run the three trainings; returns the held-out R-precisions (also printed)."""
    from examples.console import quiet_libraries

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with warnings.catch_warnings():
        quiet_libraries()
        return _run(args)


def _run(args: argparse.Namespace) -> Dict[str, Any]:
    import pytorch_lightning as pl
    from sentence_transformers import SentenceTransformer

    from quaterion.dataset import GroupSimilarityDataLoader, SimilarityGroupSample
    from examples.mining_round_steps import build_model, fit, r_precision
    from examples.quick_start import DataFileError, default_encoder_path, read_split
    from quaterion.mining import HardNegativeBatchSampler, mine_hard_negatives

    for name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    pl.seed_everything(args.seed, verbose=False)
    try:
        train = read_split(os.path.join(args.data_dir, "train.jsonl"))
        test = read_split(os.path.join(args.data_dir, "test.jsonl"))
    except (FileNotFoundError, DataFileError) as err:
        raise SystemExit(f"error: {err}") from None
    encoder = SentenceTransformer(args.encoder or default_encoder_path(), device="cpu")
    encode = lambda records: encoder.encode(  # noqa: E731
        [r["text"] for r in records], convert_to_tensor=True, show_progress_bar=False
    ).clone()
    train_vectors, test_vectors = encode(train), encode(test)
    train_groups = [int(r["group"]) for r in train]
    test_groups = [int(r["group"]) for r in test]
    samples = [SimilarityGroupSample(obj=v, group=g) for v, g in zip(train_vectors, train_groups)]
    size = train_vectors.shape[1]

    def shuffled() -> GroupSimilarityDataLoader:
        return GroupSimilarityDataLoader(samples, batch_size=args.batch_size, shuffle=True)

    first = build_model(size, args.lr)
    fit(first, shuffled(), args.epochs)
    round_1 = r_precision(first.model, test_vectors, test_groups)
    state = {k: v.clone() for k, v in first.model.head.state_dict().items()}
    print(f"round 1 (in-batch negatives, {args.epochs} epochs): R-precision {round_1:.4f}")

    mined = mine_hard_negatives(
        train_vectors,
        groups=train_groups,
        model=first.model,
        num_negatives=args.negatives,
        range_min=args.range_min,
        show_progress=False,
    )
    sampler = HardNegativeBatchSampler(
        mined, anchors_per_batch=args.batch_size // (2 + args.negatives), seed=args.seed
    )
    fit(first, GroupSimilarityDataLoader(samples, batch_sampler=sampler), args.epochs)
    round_2 = r_precision(first.model, test_vectors, test_groups)
    print(f"round 2 (+{args.epochs} epochs with mined negatives): R-precision {round_2:.4f}")

    control = build_model(size, args.lr)
    control.model.head.load_state_dict(state)
    fit(control, shuffled(), args.epochs)
    longer = r_precision(control.model, test_vectors, test_groups)
    print(f"control (+{args.epochs} epochs of shuffled batches): R-precision {longer:.4f}")
    return {"round_1": round_1, "round_2": round_2, "control": longer}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=plain_text(__doc__.splitlines()[0]))
    parser.add_argument("--data-dir", default=DATA_DIR)
    parser.add_argument("--encoder", default=None, help="sentence-transformers model directory")
    parser.add_argument("--epochs", type=positive_int, default=10)
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--negatives", type=positive_int, default=3)
    parser.add_argument("--range-min", type=non_negative_int, default=0)
    parser.add_argument("--lr", type=positive_float, default=3e-3)
    parser.add_argument("--seed", type=random_seed, default=0)
    return parser.parse_args(argv)


if __name__ == "__main__":
    run(parse_args())
