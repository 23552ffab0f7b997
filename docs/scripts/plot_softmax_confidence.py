"""Plot: the per-group peaks of a SoftmaxEmbeddingsHead tell how confident an embedding is.

A ``SoftmaxEmbeddingsHead(output_groups=8, output_size_per_group=8, ...)`` is trained with
``TripletLoss`` on ten Gaussian clusters. Its output is eight small probability vectors; the
*confidence* of an embedding is the mean of their peaks (``1/8`` = no preference in any group,
``1`` = one-hot in every group). We compare fresh points of the training clusters with inputs
the head was not trained for: midpoints of two clusters, clusters never seen, and noise.

Writes ``softmax_confidence.png`` into ``--out-dir`` (default ``docs/source/_static``)::

    python docs/scripts/plot_softmax_confidence.py
"""

from __future__ import annotations

from typing import Dict, List, Optional

import torch
from torch import Tensor

from _plotting import pyplot, save_figure, script_parser, single_thread

FILE_NAME = "softmax_confidence.png"
DIM, N_CLUSTERS, GROUPS, PER_GROUP = 32, 10, 8, 8


def confidence(embeddings: Tensor, output_groups: int, output_size_per_group: int) -> Tensor:
    """Mean over the softmax groups of each group's largest value: float ``(B,)`` in
    ``[1 / output_size_per_group, 1]``."""
    grouped = embeddings.view(len(embeddings), output_groups, output_size_per_group)
    return grouped.max(dim=-1).values.mean(dim=-1)


def make_inputs(seed: int, n: int = 500) -> Dict[str, object]:
    """Training points and four evaluation sets, all float ``(n, DIM)``."""
    generator = torch.Generator().manual_seed(seed)
    centres = 2 * torch.randn(N_CLUSTERS, DIM, generator=generator)

    def around(points_centres: Tensor) -> Tensor:
        return points_centres + torch.randn(len(points_centres), DIM, generator=generator)

    train_groups = torch.randint(0, N_CLUSTERS, (2 * n,), generator=generator)
    first = torch.randint(0, N_CLUSTERS, (n,), generator=generator)
    second = (first + 1 + torch.randint(0, N_CLUSTERS - 1, (n,), generator=generator)) % N_CLUSTERS
    unseen_centres = 2 * torch.randn(5, DIM, generator=generator)
    return {
        "train": (around(centres[train_groups]), train_groups),
        "eval": {
            "training clusters (new points)": around(
                centres[torch.randint(0, N_CLUSTERS, (n,), generator=generator)]
            ),
            "midpoint of two clusters": around((centres[first] + centres[second]) / 2),
            "unseen clusters": around(
                unseen_centres[torch.randint(0, 5, (n,), generator=generator)]
            ),
            "noise": 2 * torch.randn(n, DIM, generator=generator),
        },
    }


def measure(seed: int = 0, steps: int = 300) -> Dict[str, object]:
    """Train the head; confidence of every evaluation set and two example outputs."""
    from quaterion.loss import TripletLoss
    from quaterion_models.heads import SoftmaxEmbeddingsHead

    data = make_inputs(seed)
    x, groups = data["train"]
    torch.manual_seed(seed)
    head = SoftmaxEmbeddingsHead(
        output_groups=GROUPS, output_size_per_group=PER_GROUP, input_embedding_size=DIM
    )
    loss_fn = TripletLoss(mining="hard")
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    batches = torch.Generator().manual_seed(seed + 1)
    for _ in range(steps):
        index = torch.randperm(len(groups), generator=batches)[:128]
        loss = loss_fn(head(x[index]), groups[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    head.eval()
    with torch.no_grad():
        outputs = {name: head(points) for name, points in data["eval"].items()}
    scores = {name: confidence(out, GROUPS, PER_GROUP) for name, out in outputs.items()}
    known, midpoint = outputs["training clusters (new points)"], outputs["midpoint of two clusters"]
    return {
        "confidence": scores,
        "examples": {
            "confident (training cluster)": known[
                scores["training clusters (new points)"].argmax()
            ],
            "unsure (midpoint)": midpoint[scores["midpoint of two clusters"].argmin()],
        },
    }


def plot(results: Dict[str, object], out_dir: str) -> str:
    fig, axes = pyplot().subplots(1, 2, figsize=(10, 4))
    for name, scores in results["confidence"].items():
        axes[0].hist(
            scores.numpy(),
            bins=30,
            range=(1 / PER_GROUP, 1.0),
            label=f"{name} (mean {float(scores.mean()):.2f})",
            alpha=0.6,
        )
    axes[0].set(
        xlabel="confidence = mean of the per-group softmax peaks",
        ylabel="inputs",
        title="Confidence by kind of input",
    )
    axes[0].legend(fontsize=7, loc="upper left")
    width = 0.4
    positions = torch.arange(GROUPS * PER_GROUP).float()
    for offset, (name, vector) in zip((-width / 2, width / 2), results["examples"].items()):
        axes[1].bar((positions + offset).numpy(), vector.numpy(), width=width, label=name)
    for boundary in range(1, GROUPS):
        axes[1].axvline(boundary * PER_GROUP - 0.5, color="grey", linewidth=0.5)
    axes[1].set(
        xlabel=f"output dimension ({GROUPS} groups of {PER_GROUP}, each sums to 1)",
        ylabel="value",
        title="Two embeddings: peaked vs flat groups",
    )
    axes[1].legend(fontsize=7)
    return save_figure(fig, out_dir, FILE_NAME)


def main(argv: Optional[List[str]] = None) -> Dict[str, object]:
    parser = script_parser("Plot SoftmaxEmbeddingsHead confidence.", seed=0, steps=300)
    args = parser.parse_args(argv)
    with single_thread():
        results = measure(seed=args.seed, steps=args.steps)
    path = plot(results, args.out_dir)
    for name, scores in results["confidence"].items():
        print(
            f"{name:>32}: mean confidence {float(scores.mean()):.3f} "
            f"(median {float(scores.median()):.3f})"
        )
    print(f"uniform (no preference): {1 / PER_GROUP:.3f}; wrote {path}")
    return results


if __name__ == "__main__":
    main()
