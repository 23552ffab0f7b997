"""What the examples must not print: library banners, tips, summaries and known-harmless
deprecation warnings that the examples silence (see ``examples/console.py``)."""

import re
from typing import List

BANNED = (
    "💡 Tip",
    "litlogger",
    "GPU available",
    "TPU available",
    "Total FLOPs",
    "Trainable params",
    "tensorboardX",
    "LeafSpec",
    "Loading weights",
    "Writing model shards",
    "v_num",
    "Seed set to",
)


def banned_lines(output: str) -> List[str]:
    """Lines of ``output`` (progress-bar carriage returns split too) holding a banned string."""
    lines = re.split(r"[\r\n]+", output)
    return [line for line in lines if any(text in line for text in BANNED)]


def metric_lines(output: str, *names: str) -> List[str]:
    """Lines that hold every one of ``names``: the epoch bar keeps its metrics on one line."""
    return [line for line in re.split(r"[\r\n]+", output) if all(name in line for name in names)]


def doubled_final_bars(output: str) -> List[str]:
    """tqdm bars whose finished ``100%|`` state was printed twice (tqdm does that off a
    terminal: once on the last update, once on close)."""
    finished = [line.split("100%|")[0] for line in re.split(r"[\r\n]+", output) if "100%|" in line]
    return sorted({prefix for prefix in finished if finished.count(prefix) > 1})
