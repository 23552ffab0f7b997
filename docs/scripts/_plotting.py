"""Shared helpers of the documentation plot scripts: command line, Agg backend, atomic save."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

STATIC_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "source", "_static"))
REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OPTION_HELP = {
    "epochs": "training epochs",
    "limit": "texts per split (default: all)",
    "seed": "random seed",
    "steps": "training steps",
}


def script_parser(description: str, **int_options: Optional[int]) -> argparse.ArgumentParser:
    """``--out-dir`` (default ``docs/source/_static``) plus one integer option per keyword,
    e.g. ``seed=0`` adds ``--seed`` with default 0."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out-dir", default=STATIC_DIR, help="where the PNG is written")
    for name, default in int_options.items():
        parser.add_argument(f"--{name}", type=int, default=default, help=OPTION_HELP.get(name))
    return parser


def import_repo() -> None:
    """Make the repository importable (``examples``, ``benchmarks``) from a script run by path."""
    if REPO_ROOT not in sys.path:
        sys.path.insert(0, REPO_ROOT)


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out_dir: str, name: str) -> str:
    """Lay ``fig`` out tightly, save it as ``<out_dir>/<name>`` atomically and close it;
    returns the path."""
    from quaterion_models.utils import atomic_write

    fig.tight_layout()
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, name)
    try:
        with atomic_write(path) as file:
            fig.savefig(file, dpi=80, format="png", metadata={"Software": None})
    finally:
        fig.clear()
        import matplotlib.pyplot as plt

        plt.close(fig)
    return path


class single_thread:
    """Context manager: run torch on one intra-op thread (tiny models; restores the old count).

    The plot scripts train toy models where thread hand-offs cost more than they save, most of
    all on a busy machine.
    """

    def __enter__(self):
        import torch

        self._previous = torch.get_num_threads()
        torch.set_num_threads(1)
        return self

    def __exit__(self, *exc_info):
        import torch

        torch.set_num_threads(self._previous)
        return False
