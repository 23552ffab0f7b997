"""Measure: held-out R-precision per epoch of three heads over the frozen quick-start encoder.

The quick-start texts are encoded once with all-MiniLM-L6-v2; then a ``SkipConnectionHead``,
a one-layer ``StackedProjectionHead`` and a ``WideningHead`` are trained on the same cached
vectors with the same loss (``TripletLoss(mining="hard")``), optimiser (Adam, ``lr=1e-2``) and
batches (64), in a plain torch loop, and scored on the held-out topics after every epoch.

Writes ``head_comparison.png`` into ``--out-dir`` (default ``docs/source/_static``)::

    python docs/scripts/compare_heads.py
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional

import torch

from _plotting import import_repo, pyplot, save_figure, script_parser, single_thread

FILE_NAME = "head_comparison.png"


def encode_splits(limit: Optional[int]) -> Dict[str, tuple]:
    """``{"train"|"test": (float (N, 384) vectors, int64 (N,) groups)}`` of the quick start."""
    from examples.console import quiet_libraries
    from examples.quick_start import DATA_DIR, default_encoder_path, read_split

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    quiet_libraries()
    from quaterion_models.encoders.extras.transformer_encoder import TransformerEncoder

    encoder = TransformerEncoder(default_encoder_path())
    splits = {}
    for name in ("train", "test"):
        records = read_split(os.path.join(DATA_DIR, f"{name}.jsonl"), limit)
        with torch.no_grad():
            texts = [r["text"] for r in records]
            vectors = torch.cat(
                [
                    encoder(encoder.get_collate_fn()(texts[start : start + 64]))
                    for start in range(0, len(texts), 64)
                ]
            )
        splits[name] = (vectors, torch.tensor([r["group"] for r in records]))
    return splits


def build_heads(dim: int) -> Dict[str, torch.nn.Module]:
    from quaterion_models.heads import SkipConnectionHead, StackedProjectionHead, WideningHead

    return {
        "SkipConnectionHead": SkipConnectionHead(dim, dropout=0.1),
        "StackedProjectionHead([384])": StackedProjectionHead(dim, output_sizes=[dim], dropout=0.1),
        "WideningHead": WideningHead(dim, dropout=0.1),
    }


def held_out_score(head: torch.nn.Module, metric, vectors: torch.Tensor, groups) -> float:
    """R-precision of ``head(vectors)`` in eval mode (dropout off)."""
    head.eval()
    with torch.no_grad():
        return float(metric.compute(head(vectors), groups))


def train_heads(splits: Dict[str, tuple], epochs: int, seed: int) -> Dict[str, List[float]]:
    """Held-out R-precision of each head at initialisation and after every epoch."""
    from quaterion.eval.group import RetrievalRPrecision
    from quaterion.loss import TripletLoss

    metric = RetrievalRPrecision()
    (x_train, g_train), (x_test, g_test) = splits["train"], splits["test"]
    torch.manual_seed(seed)
    curves: Dict[str, List[float]] = {}
    for name, head in build_heads(x_train.shape[1]).items():
        loss_fn = TripletLoss(mining="hard", margin=0.5)
        optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
        batches = torch.Generator().manual_seed(seed)

        curve = [held_out_score(head, metric, x_test, g_test)]
        for _ in range(epochs):
            head.train()
            order = torch.randperm(len(g_train), generator=batches)
            for start in range(0, len(order), 64):
                index = order[start : start + 64]
                loss = loss_fn(head(x_train[index]), g_train[index])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            curve.append(held_out_score(head, metric, x_test, g_test))
        curves[name] = curve
    return curves


def plot(curves: Dict[str, List[float]], out_dir: str) -> str:
    fig, ax = pyplot().subplots(figsize=(6, 3.5))
    for name, curve in curves.items():
        ax.plot(range(len(curve)), curve, marker="o", markersize=3, label=name)
    ax.set(
        xlabel="epoch (0 = untrained head)",
        ylabel="held-out R-precision",
        title="Heads over frozen MiniLM, quick-start data",
    )
    ax.legend(fontsize=8)
    return save_figure(fig, out_dir, FILE_NAME)


def main(argv: Optional[List[str]] = None) -> Dict[str, List[float]]:
    parser = script_parser("Compare heads on the quick-start data.", epochs=10, limit=None, seed=0)
    args = parser.parse_args(argv)
    import_repo()  # the script reuses examples/quick_start.py
    splits = encode_splits(args.limit)
    with single_thread():
        curves = train_heads(splits, args.epochs, args.seed)
    path = plot(curves, args.out_dir)
    for name, curve in curves.items():
        print(
            f"{name:>30}: untrained {curve[0]:.3f}, epoch 1 {curve[1]:.3f}, "
            f"last epoch {curve[-1]:.3f}"
        )
    print(f"wrote {path}")
    return curves


if __name__ == "__main__":
    main()
