"""Plot: batch-hard triplet training that collapses every vector to one point, and two fixes.

A small MLP embeds noisy Gaussian clusters (Euclidean distance, margin 0.5, Adam). Three runs
share data, initialisation and batches; only the loss differs:

* ``plain batch-hard``: ``mean_i [p_i - n_i + m]_+`` with hardest positive ``p_i`` and hardest
  negative ``n_i`` (the textbook formula, written out below). Moving every vector onto one
  point makes ``p_i = n_i = 0`` and the loss exactly ``m``: that is the collapse, and the loss
  curve sticks at the margin;
* ``TripletLoss(mining="hard")``: our batch-hard loss divides the gap by the mean hardest
  negative distance, so shrinking the space no longer lowers the loss;
* ``TripletLoss(mining="semi_hard")``: compares positives with negatives that are not closer
  than them, so the hardest (often noisy) negatives do not dominate.

Writes ``triplet_collapse.png`` into ``--out-dir`` (default ``docs/source/_static``)::

    python docs/scripts/plot_triplet_collapse.py
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional

import torch
from torch import Tensor

from _plotting import pyplot, save_figure, script_parser, single_thread

FILE_NAME = "triplet_collapse.png"
MARGIN = 0.5


def noisy_clusters(seed: int, n_groups: int = 10, per_group: int = 100, dim: int = 32):
    """Overlapping Gaussian clusters: float ``(n, dim)`` and int64 groups ``(n,)``."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_groups, dim, generator=generator)
    groups = torch.arange(n_groups).repeat_interleave(per_group)
    return centres[groups] + 2.0 * torch.randn(len(groups), dim, generator=generator), groups


def plain_batch_hard(embeddings: Tensor, groups: Tensor, margin: float = MARGIN) -> Tensor:
    """Textbook batch-hard triplet loss, Euclidean: ``mean_i [p_i - n_i + m]_+``."""
    distances = torch.cdist(embeddings, embeddings)
    same = groups[:, None] == groups[None, :]
    positive = same & ~torch.eye(len(groups), dtype=torch.bool)
    hardest_positive = (distances * positive).max(dim=1).values
    hardest_negative = distances.masked_fill(same, float("inf")).min(dim=1).values
    return torch.relu(hardest_positive - hardest_negative + margin).mean()


def r_precision(embeddings: Tensor, groups: Tensor) -> float:
    """Micro-averaged R-precision, Euclidean, every row a query (self excluded)."""
    from quaterion.distances import Distance
    from quaterion.eval.group import RetrievalRPrecision

    metric = RetrievalRPrecision(distance_metric_name=Distance.EUCLIDEAN)
    return float(metric.compute(embeddings, groups))


def losses() -> Dict[str, Callable[[Tensor, Tensor], Tensor]]:
    from quaterion.distances import Distance
    from quaterion.loss import TripletLoss

    return {
        "plain batch-hard": plain_batch_hard,
        'TripletLoss(mining="hard")': TripletLoss(
            margin=MARGIN, mining="hard", distance_metric_name=Distance.EUCLIDEAN
        ),
        'TripletLoss(mining="semi_hard")': TripletLoss(
            margin=MARGIN, mining="semi_hard", distance_metric_name=Distance.EUCLIDEAN
        ),
    }


def train(loss_fn, seed: int, steps: int, lr: float = 1e-2, batch_size: int = 64):
    """Train a fresh MLP with ``loss_fn``; returns loss per step, spread per step, final vectors."""
    x, groups = noisy_clusters(seed)
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 16))
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    batches = torch.Generator().manual_seed(seed + 1)
    loss_curve, spread_curve = [], []
    for _ in range(steps):
        index = torch.randperm(len(groups), generator=batches)[:batch_size]
        embeddings = net(x[index])
        loss = loss_fn(embeddings, groups[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            centred = embeddings - embeddings.mean(dim=0)
            spread_curve.append(float(centred.norm(dim=1).mean()))
        loss_curve.append(float(loss.detach()))
    with torch.no_grad():
        final = net(x)
    return loss_curve, spread_curve, final, groups


def measure(seed: int = 0, steps: int = 300) -> Dict[str, Dict[str, object]]:
    """Train one model per loss; loss/spread curves and final R-precision."""
    x, groups = noisy_clusters(seed)
    results: Dict[str, Dict[str, object]] = {"input": {"r_precision": r_precision(x, groups)}}
    for name, loss_fn in losses().items():
        loss_curve, spread_curve, final, groups = train(loss_fn, seed, steps)
        results[name] = {
            "loss": loss_curve,
            "spread": spread_curve,
            "final_spread": float((final - final.mean(dim=0)).norm(dim=1).mean()),
            "r_precision": r_precision(final, groups),
        }
    return results


def plot(results: Dict[str, Dict[str, object]], out_dir: str) -> str:
    runs = [name for name in results if name != "input"]
    fig, axes = pyplot().subplots(1, 2, figsize=(10, 4))
    for name in runs:
        axes[0].plot(results[name]["loss"], label=name, linewidth=1)
        axes[1].plot(results[name]["spread"], label=name, linewidth=1)
    axes[0].axhline(MARGIN, color="grey", linestyle="--", linewidth=1, label="margin")
    axes[0].set(
        xlabel="step", ylabel="training loss", title="Loss: the collapsed run sticks at the margin"
    )
    axes[0].legend(fontsize=8)
    axes[1].set_yscale("log")
    axes[1].set(
        xlabel="step",
        ylabel="mean distance to the batch centroid",
        title="Spread of the embeddings",
    )
    axes[1].legend(fontsize=8)
    return save_figure(fig, out_dir, FILE_NAME)


def main(argv: Optional[List[str]] = None) -> Dict[str, Dict[str, object]]:
    parser = script_parser("Plot triplet-loss collapse and its fixes.", seed=0, steps=300)
    args = parser.parse_args(argv)
    with single_thread():
        results = measure(seed=args.seed, steps=args.steps)
    path = plot(results, args.out_dir)
    print(f"input R-precision: {results['input']['r_precision']:.3f}")
    for name, values in results.items():
        if name == "input":
            continue
        tail = values["loss"][-20:]
        print(
            f"{name:>32}: last-20-step loss {sum(tail) / len(tail):.4f}, final spread "
            f"{values['final_spread']:.5f}, R-precision {values['r_precision']:.3f}"
        )
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
