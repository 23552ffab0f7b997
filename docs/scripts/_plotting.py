"""Shared helpers of the documentation plot scripts (Agg backend, output paths, atomic save)."""

from __future__ import annotations

import os
import tempfile

STATIC_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "source", "_static"))


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out_dir: str, name: str) -> str:
    """Save ``fig`` as ``<out_dir>/<name>`` atomically and close it; returns the path."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, name)
    fd, tmp = tempfile.mkstemp(dir=out_dir, suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=80, format="png", metadata={"Software": None})
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
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
