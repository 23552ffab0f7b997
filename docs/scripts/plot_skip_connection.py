"""Plot: a freshly built SkipConnectionHead is close to the identity, a plain projection is not.

Inputs are clustered vectors standing in for a frozen encoder's output. For each untrained
head we measure (a) the cosine similarity between every input and its output and (b) how well
the pairwise distances of the outputs follow those of the inputs (Pearson correlation), and
the R-precision of the clusters before and after the head.

Writes ``skip_connection_identity.png`` into ``--out-dir`` (default ``docs/source/_static``)::

    python docs/scripts/plot_skip_connection.py
"""

from __future__ import annotations

from typing import Dict, List, Optional

import torch
from torch import Tensor

from _plotting import pyplot, save_figure, script_parser, single_thread

FILE_NAME = "skip_connection_identity.png"


def clustered_inputs(n_groups: int, per_group: int, dim: int, seed: int):
    """Unit vectors around ``n_groups`` random centres: float ``(n, dim)``, int64 ``(n,)``."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_groups, dim, generator=generator)
    groups = torch.arange(n_groups).repeat_interleave(per_group)
    points = centres[groups] + 1.4 * torch.randn(len(groups), dim, generator=generator)
    return torch.nn.functional.normalize(points, dim=1), groups


def cosine_distances(x: Tensor) -> Tensor:
    x = torch.nn.functional.normalize(x, dim=1)
    return 1 - x @ x.T


def r_precision(x: Tensor, groups: Tensor) -> float:
    """Micro-averaged R-precision with cosine distance, every row a query (self excluded)."""
    distances = cosine_distances(x)
    distances.fill_diagonal_(float("inf"))
    relevant = (groups[:, None] == groups[None, :]).float()
    relevant.fill_diagonal_(0)
    ranked = relevant.gather(1, distances.argsort(dim=1))
    r = relevant.sum(dim=1, keepdim=True)
    positions = torch.arange(len(groups))[None, :]
    return float((ranked * (positions < r)).sum() / r.sum())


def build_heads(dim: int) -> Dict[str, torch.nn.Module]:
    from quaterion_models.heads import SkipConnectionHead, StackedProjectionHead, WideningHead

    return {
        "SkipConnectionHead": SkipConnectionHead(dim),
        "StackedProjectionHead([d])": StackedProjectionHead(dim, output_sizes=[dim]),
        "WideningHead": WideningHead(dim),
    }


def measure(seed: int = 0, dim: int = 64) -> Dict[str, Dict[str, object]]:
    """Per head: cosine(x, head(x)) per row, distance correlation and R-precision."""
    torch.manual_seed(seed)
    x, groups = clustered_inputs(n_groups=8, per_group=25, dim=dim, seed=seed)
    d_in = cosine_distances(x)
    upper = torch.triu_indices(len(x), len(x), offset=1)
    results: Dict[str, Dict[str, object]] = {"input": {"r_precision": r_precision(x, groups)}}
    for name, head in build_heads(dim).items():
        head.eval()
        with torch.no_grad():
            y = head(x)
        d_out = cosine_distances(y)
        pair_in, pair_out = d_in[upper[0], upper[1]], d_out[upper[0], upper[1]]
        results[name] = {
            "cosine_to_input": torch.nn.functional.cosine_similarity(x, y, dim=1),
            "distance_correlation": float(torch.corrcoef(torch.stack([pair_in, pair_out]))[0, 1]),
            "r_precision": r_precision(y, groups),
            "pairs": (pair_in, pair_out),
        }
    return results


def plot(results: Dict[str, Dict[str, object]], out_dir: str) -> str:
    heads = [name for name in results if name != "input"]
    fig, axes = pyplot().subplots(1, 2, figsize=(10, 4))
    for name in heads:
        axes[0].hist(
            results[name]["cosine_to_input"].numpy(),
            bins=30,
            range=(-0.5, 1.0),
            alpha=0.7,
            label=name,
        )
    axes[0].set(
        xlabel="cosine(x, head(x)) at initialisation",
        ylabel="inputs",
        title="Output vs input of an untrained head",
    )
    axes[0].legend(fontsize=8)
    for name in heads:
        pair_in, pair_out = results[name]["pairs"]
        step = max(1, len(pair_in) // 1500)
        axes[1].scatter(
            pair_in[::step].numpy(),
            pair_out[::step].numpy(),
            s=3,
            alpha=0.5,
            label=f"{name} (r={results[name]['distance_correlation']:.3f})",
        )
    axes[1].set(
        xlabel="cosine distance between inputs",
        ylabel="cosine distance between outputs",
        title="Pairwise distances kept by the head",
    )
    axes[1].legend(fontsize=8, markerscale=4)
    return save_figure(fig, out_dir, FILE_NAME)


def main(argv: Optional[List[str]] = None) -> Dict[str, Dict[str, object]]:
    args = script_parser("Plot the near-identity SkipConnectionHead.", seed=0).parse_args(argv)
    with single_thread():
        results = measure(seed=args.seed)
    path = plot(results, args.out_dir)
    print(f"input R-precision: {results['input']['r_precision']:.3f}")
    for name, values in results.items():
        if name == "input":
            continue
        cosine = values["cosine_to_input"]
        print(
            f"{name:>28}: mean cos(x, head(x)) {float(cosine.mean()):.4f} "
            f"(min {float(cosine.min()):.4f}), distance correlation "
            f"{values['distance_correlation']:.4f}, R-precision {values['r_precision']:.3f}"
        )
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
