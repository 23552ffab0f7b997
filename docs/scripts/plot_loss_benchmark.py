"""Plot ``benchmarks/losses.py``'s table: time and memory ratios quaterion / baseline.

Reads the CSV written by ``python -m benchmarks.losses --csv docs/source/_static/loss_benchmark.csv``
and writes ``loss_benchmark.png`` into ``--out-dir`` (default ``docs/source/_static``)::

    PYTHONPATH=. python docs/scripts/plot_loss_benchmark.py
"""

import csv
import math
import os
from typing import Dict, List, Optional

from _plotting import STATIC_DIR, pyplot, save_figure, script_parser

FILE_NAME = "loss_benchmark.png"
TICKS = [0.125, 0.25, 0.5, 1, 2, 4, 8]
DEFAULT_CSV = os.path.join(STATIC_DIR, "loss_benchmark.csv")


def read_rows(path: str) -> List[Dict[str, object]]:
    """Rows of the benchmark CSV with numbers parsed (``nan`` where PML was skipped)."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["batch"] = int(row["batch"])
        for key in ("time_ratio", "memory_ratio"):
            row[key] = float(row[key])
    return rows


def plot(rows: List[Dict[str, object]], out_dir: str) -> str:
    """Two panels of grouped horizontal bars (one bar per batch size), log-scale ratios."""
    plt = pyplot()
    names = list(dict.fromkeys(row["loss"] for row in rows))
    batches = sorted({row["batch"] for row in rows})
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.45 * len(names) + 2), sharey=True)
    height = 0.8 / len(batches)
    for ax, key, title in (
        (axes[0], "time_ratio", "forward + backward time"),
        (axes[1], "memory_ratio", "peak memory added"),
    ):
        for i, batch in enumerate(batches):
            values = {row["loss"]: row[key] for row in rows if row["batch"] == batch}
            ys = [n + i * height for n in range(len(names))]
            xs = [values.get(name, math.nan) for name in names]
            ax.barh(ys, [0 if math.isnan(x) else x for x in xs], height, label=f"batch {batch}")
        ax.axvline(1.0, color="black", linewidth=1)
        ax.set_xscale("log")
        ax.set_xticks(TICKS, [f"{t:g}" for t in TICKS])
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.set_xlim(TICKS[0] / 1.5, TICKS[-1] * 1.5)
        ax.set_title(f"{title}\nquaterion / baseline (< 1 is better)")
    axes[0].set_yticks([n + height * (len(batches) - 1) / 2 for n in range(len(names))])
    axes[0].set_yticklabels(names)
    axes[0].invert_yaxis()
    axes[1].legend(loc="lower right")
    return save_figure(fig, out_dir, FILE_NAME)


def main(argv: Optional[List[str]] = None) -> List[Dict[str, object]]:
    parser = script_parser("Plot the loss benchmark ratios.")
    parser.add_argument("--csv", default=DEFAULT_CSV)
    args = parser.parse_args(argv)
    rows = read_rows(args.csv)
    print(plot(rows, args.out_dir))
    return rows


if __name__ == "__main__":
    main()
